import math
import random

import pytest
import torch

from cinescale_post.ops.blur import gaussian_blur_3d
from cinescale_post.ops.fusion import (FusionState, WindowGeometry, ScaleFusionAttnProcessor, apply_scale_fusion,
                                       dilated_global_attention, fuse_scales, get_views, local_window_attention,
                                       token_grid, window_count, window_geometry, window_starts)


def _reference_geometry(n_tokens, H, W):
    """ALGORITHM.md 3.2 written out literally (token grid from N and the ratio)."""
    s_h, s_w = H // 1024, W // 1024
    ratio = s_h / s_w
    h_tok = int(math.sqrt(n_tokens * ratio))
    w_tok = int(h_tok / ratio)
    f = 128 * s_h / h_tok
    sub_h, sub_w = (128, int(128 / ratio)) if ratio > 1 else (int(128 * ratio), 128)
    win = (int(sub_h / f), int(sub_w / f))
    stride = (int((sub_h // 2) / f), int((sub_w // 2) / f))
    return (h_tok, w_tok), win, stride, (win[0] // 8, win[1] // 8)


@pytest.mark.parametrize("H,W,level", [(2048, 2048, 1), (2048, 2048, 2), (4096, 4096, 1), (4096, 4096, 2),
                                       (2048, 4096, 1), (4096, 2048, 2), (8192, 8192, 1), (2048, 3072, 1)])
def test_geometry_equals_reference_formula(H, W, level):
    gh, gw = H // 8 // 2**level, W // 8 // 2**level
    grid, win, stride, jit = _reference_geometry(gh * gw, H, W)
    g = window_geometry((gh, gw), (H, W))
    if grid == (gh, gw):  # the reference recovers the grid for these sizes
        assert (g.window, g.stride, g.jitter) == (win, stride, jit)
    assert g.kernel == 2 * max(H // 1024, W // 1024) - 1


@pytest.mark.parametrize("target,grid,win,stride,count,r", [
    (2048, 128, 64, 32, 3, 8), (2048, 64, 32, 16, 3, 4), (4096, 256, 64, 32, 7, 8), (4096, 128, 32, 16, 7, 4)])
def test_geometry_table(target, grid, win, stride, count, r):
    g = window_geometry((grid, grid), (target, target))
    assert g.window == (win, win) and g.stride == (stride, stride) and g.jitter == (r, r)
    assert g.counts == (count, count)


def test_window_starts_cover_and_clamp():
    assert window_count(10, 4, 2) == 4 and window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(4, 4, 2) == [0] and window_starts(3, 4, 2) == [0]
    for G, w, s in [(128, 64, 32), (37, 8, 4), (100, 32, 16)]:
        st = window_starts(G, w, s)
        assert st[-1] + w == G and st[0] == 0
        covered = set()
        for a in st:
            covered.update(range(a, a + w))
        assert covered == set(range(G))


def test_views_jitter_rules_and_draw_order():
    # reference geometry for a 2:1 target halves the window width (faithful quirk)
    q = window_geometry((16, 8), (128, 64), base=64, base_latent=8)
    assert q.scale == (2, 1) and q.window == (8, 4) and q.stride == (4, 2) and q.jitter == (1, 0)
    g = WindowGeometry(grid=(16, 8), scale=(2, 1), window=(8, 8), stride=(4, 4), jitter=(1, 1), kernel=3)
    draws = []

    def fn(lo, hi):
        draws.append((lo, hi))
        return hi

    views = get_views(g, fn)
    rh, rw = g.jitter
    # width spans the whole axis (one window): no draw for it, only height draws
    assert all(v[2] == rw and v[3] == rw + 8 for v in views)
    hs = window_starts(16, g.window[0], g.stride[0])
    expect = []
    for a in hs:
        b = a + g.window[0]
        expect.append((-rh, 0) if a == 0 else (0, rh) if b == 16 else (-rh, rh))
    assert draws == expect
    nominal = get_views(g, None)
    assert [v[0] - rh for v in nominal] == hs


def test_views_draw_width_first():
    g = window_geometry((16, 16), (128, 128), base=64, base_latent=8)
    draws = []

    def fn(lo, hi):
        draws.append((lo, hi))
        return 0

    get_views(g, fn)
    r = g.jitter[0]
    # first view: top-left corner -> width draw (-r, 0) then height draw (-r, 0)
    assert draws[:2] == [(-r, 0), (-r, 0)]
    # second view (w interior) -> (-r, r) for width first
    assert draws[2] == (-r, r)


def _attend_naive(x, views, pad, attend):
    b, h, w, c = x.shape
    xp = torch.nn.functional.pad(x, (0, 0, pad[1], pad[1], pad[0], pad[0]))
    acc = torch.zeros_like(xp)
    cnt = torch.zeros_like(xp)
    for h0, h1, w0, w1 in views:
        y = attend(xp[:, h0:h1, w0:w1].reshape(b, -1, c)).reshape(b, h1 - h0, w1 - w0, c)
        acc[:, h0:h1, w0:w1] += y
        cnt[:, h0:h1, w0:w1] += 1
    acc = acc[:, pad[0]:pad[0] + h, pad[1]:pad[1] + w]
    cnt = cnt[:, pad[0]:pad[0] + h, pad[1]:pad[1] + w]
    return acc / cnt


def _softmax_attend(t):
    return torch.softmax(t @ t.transpose(1, 2) / 4, dim=-1) @ t


def test_local_branch_equals_naive_per_window_loop():
    x = torch.randn(2, 16, 16, 5, generator=torch.Generator().manual_seed(0))
    g = window_geometry((16, 16), (128, 128), base=64, base_latent=8)
    views = get_views(g, random.Random(3).randint)
    a = local_window_attention(x, views, g.jitter, _softmax_attend)
    b = local_window_attention(x, views, g.jitter, _softmax_attend, max_batch=2)
    ref = _attend_naive(x, views, g.jitter, _softmax_attend)
    assert torch.allclose(a, ref, atol=1e-6) and torch.allclose(b, ref, atol=1e-6)
    ident = local_window_attention(x, get_views(g, None), g.jitter, lambda t: t)
    assert torch.allclose(ident, x, atol=1e-6)


def test_dilated_global_equals_naive_subgrids():
    x = torch.randn(1, 8, 6, 3, generator=torch.Generator().manual_seed(2))
    out = dilated_global_attention(x, (2, 3), _softmax_attend)
    ref = torch.empty_like(x)
    for a in range(2):
        for b in range(3):
            sub = x[:, a::2, b::3]
            ref[:, a::2, b::3] = _softmax_attend(sub.reshape(1, -1, 3)).reshape(sub.shape)
    assert torch.allclose(out, ref, atol=1e-6)


def test_fusion_formula():
    loc = torch.randn(2, 6, 6, 4, generator=torch.Generator().manual_seed(4))
    glo = torch.randn(2, 6, 6, 4, generator=torch.Generator().manual_seed(5))
    out = fuse_scales(loc, glo, 3)
    ref = gaussian_blur_3d(loc, 3) + glo - gaussian_blur_3d(glo, 3)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(fuse_scales(glo, glo, 3), glo, atol=1e-6)


def test_token_grid():
    assert token_grid(64, (16, 16)) == (8, 8)
    assert token_grid(4 * 6, (15, 23)) == (4, 6)
    with pytest.raises(ValueError):
        token_grid(7, (16, 16))


def test_processor_equals_naive_global_plus_local():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8).eval()
    inner = AttnProcessor2_0()
    x = torch.randn(2, 16 * 16, 16, generator=torch.Generator().manual_seed(1))
    state = FusionState(target_hw=(128, 128), latent_hw=(16, 16), base=64, base_latent=8,
                        jitter_fn=random.Random(7).randint)
    proc = ScaleFusionAttnProcessor(inner, state)
    with torch.no_grad():
        out = proc(attn, x)
        g = window_geometry((16, 16), (128, 128), base=64, base_latent=8)
        views = get_views(g, random.Random(7).randint)

        def att(t):
            return inner(attn, t)

        glob = att(x).reshape(2, 16, 16, 16)
        loc = _attend_naive(x.reshape(2, 16, 16, 16), views, g.jitter, att)
        ref = gaussian_blur_3d(loc, 3) + glob - gaussian_blur_3d(glob, 3)
    assert torch.allclose(out, ref.reshape(2, 256, 16), atol=1e-5)
    assert state.calls == 1
    # cross-attention passes straight through
    ctx = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(proc(attn, x, ctx), inner(attn, x, ctx))


def test_apply_and_remove_on_unet(tiny_unet, unet_inputs):
    ref = tiny_unet(**unet_inputs).sample
    procs = dict(tiny_unet.attn_processors)
    state = FusionState(target_hw=(256, 256), latent_hw=(16, 16), base=64, base_latent=8)
    h = apply_scale_fusion(tiny_unet, ("*transformer_blocks.*.attn1.processor",), state)
    assert len(h.layers) == 17 and all(".attn1." in n for n in h.layers)
    changed = tiny_unet(**unet_inputs).sample
    assert state.calls == 17
    h.remove()
    assert not torch.allclose(changed, ref, atol=1e-5)
    assert torch.equal(tiny_unet(**unet_inputs).sample, ref)
    assert dict(tiny_unet.attn_processors) == procs
    with pytest.raises(RuntimeError):
        with apply_scale_fusion(tiny_unet, ("*attn1.processor",), state):
            raise RuntimeError("boom")
    assert dict(tiny_unet.attn_processors) == procs
    with pytest.raises(KeyError, match="fix"):
        apply_scale_fusion(tiny_unet, ("*nothing*",), state)


def test_scale_one_target_is_global_attention(tiny_unet, unet_inputs):
    """At the base size every window is the whole grid: fusion == global."""
    ref = tiny_unet(**unet_inputs).sample
    state = FusionState(target_hw=(64, 64), latent_hw=(16, 16), base=64, base_latent=8,
                        jitter_fn=random.Random(0).randint)
    with apply_scale_fusion(tiny_unet, ("*attn1.processor",), state):
        out = tiny_unet(**unet_inputs).sample
    assert torch.allclose(out, ref, atol=1e-5)
