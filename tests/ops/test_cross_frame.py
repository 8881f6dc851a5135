import math

import pytest
import torch
import torch.nn.functional as F

from cinescale_post.ops.cross_frame import (CrossFrameAttnProcessor, CrossFrameState, apply_cross_frame,
                                            cross_frame_attention)

SELF_ATTN = ("*transformer_blocks.*.attn1.processor",)


def _naive(q, k, v, frames, anchor, mode):
    """Row by row, softmax written out."""
    out = torch.empty_like(q)
    for r in range(q.shape[0]):
        a = (r // frames) * frames + anchor
        if r == a:
            kk, vv = k[r], v[r]
        elif mode == "concat":
            kk, vv = torch.cat([k[r], k[a]], dim=1), torch.cat([v[r], v[a]], dim=1)
        else:
            kk, vv = k[a], v[a]
        w = torch.softmax(q[r] @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        out[r] = w @ vv
    return out


@pytest.mark.parametrize("mode", ["concat", "anchor"])
@pytest.mark.parametrize("frames,anchor", [(3, 0), (3, 1), (2, 1)])
def test_attention_matches_the_naive_formula(mode, frames, anchor):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2 * frames, 2, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    out = cross_frame_attention(q, k, v, frames, anchor, mode)
    assert torch.allclose(out, _naive(q, k, v, frames, anchor, mode), atol=1e-10)
    # anchor rows are plain attention, exactly
    rows = torch.arange(2) * frames + anchor
    assert torch.equal(out[rows], F.scaled_dot_product_attention(q[rows], k[rows], v[rows]))


def test_one_frame_is_plain_attention_and_bad_layouts_are_refused():
    q, k, v = (torch.randn(3, 2, 4, 8) for _ in range(3))
    assert torch.equal(cross_frame_attention(q, k, v, 1), F.scaled_dot_product_attention(q, k, v))
    with pytest.raises(ValueError, match="3 batch rows are not groups of 2 frames"):
        cross_frame_attention(q, k, v, 2)
    with pytest.raises(ValueError, match="mode"):
        cross_frame_attention(q, k, v, 1, mode="both")
    with pytest.raises(ValueError, match=r"\(R, heads, n, d\)"):
        cross_frame_attention(q[0], k, v, 1)
    with pytest.raises(ValueError, match="anchor"):
        CrossFrameState(frames=2, anchor=2)
    with pytest.raises(ValueError, match="frames"):
        CrossFrameState(frames=0)


def _unet_batch(unet_inputs, rows):
    g = torch.Generator().manual_seed(5)
    kw = dict(unet_inputs)
    kw["sample"] = torch.randn(rows, 4, 16, 16, generator=g)
    kw["encoder_hidden_states"] = unet_inputs["encoder_hidden_states"].expand(rows, -1, -1)
    kw["added_cond_kwargs"] = {k: v.expand(rows, -1) for k, v in unet_inputs["added_cond_kwargs"].items()}
    return kw


def test_processor_on_the_unet_shares_the_anchor_and_restores_exactly(tiny_unet, unet_inputs):
    kw = _unet_batch(unet_inputs, 2)
    with torch.no_grad():
        plain = tiny_unet(**kw).sample
        solo = [tiny_unet(**{**kw, "sample": kw["sample"][i:i + 1],
                             "encoder_hidden_states": kw["encoder_hidden_states"][:1],
                             "added_cond_kwargs": {k: v[:1] for k, v in kw["added_cond_kwargs"].items()}}).sample
                for i in range(2)]
    before = dict(tiny_unet.attn_processors)
    state = CrossFrameState(frames=2, anchor=0)
    with apply_cross_frame(tiny_unet, SELF_ATTN, state) as h:
        assert len(h.layers) == 17 and all(isinstance(tiny_unet.attn_processors[n], CrossFrameAttnProcessor)
                                          for n in h.layers)
        assert not any(isinstance(p, CrossFrameAttnProcessor) for n, p in tiny_unet.attn_processors.items()
                       if n not in h.layers)  # cross-attention untouched
        with torch.no_grad():
            cf = tiny_unet(**kw).sample
            # the anchor frame renders as alone; changing the other frame does not move it
            other = dict(kw, sample=torch.cat([kw["sample"][:1], torch.randn(1, 4, 16, 16)]))
            cf2 = tiny_unet(**other).sample
        assert state.calls > 0
    assert torch.allclose(cf[0], solo[0][0], atol=1e-5)
    assert torch.allclose(cf2[0], cf[0], atol=1e-5)
    assert (cf[1] - plain[1]).abs().max() > 1e-3  # the other frame attends to the anchor too
    # removed: processors are the same objects, outputs bit-identical
    assert all(tiny_unet.attn_processors[n] is p for n, p in before.items())
    with torch.no_grad():
        assert torch.equal(tiny_unet(**kw).sample, plain)


def test_identical_frames_attend_as_alone(tiny_unet, unet_inputs):
    kw = _unet_batch(unet_inputs, 1)
    with torch.no_grad():
        alone = tiny_unet(**kw).sample
        kw2 = {**kw, "sample": kw["sample"].repeat(3, 1, 1, 1),
               "encoder_hidden_states": kw["encoder_hidden_states"].expand(3, -1, -1),
               "added_cond_kwargs": {k: v.expand(3, -1) for k, v in kw["added_cond_kwargs"].items()}}
        with apply_cross_frame(tiny_unet, SELF_ATTN, CrossFrameState(frames=3, anchor=1)):
            out = tiny_unet(**kw2).sample
    # attending over [k; k] is attending over k
    assert torch.allclose(out, alone.expand(3, -1, -1, -1), atol=1e-5)


def test_handle_restores_on_exceptions(tiny_unet, unet_inputs):
    before = dict(tiny_unet.attn_processors)
    kw = _unet_batch(unet_inputs, 3)  # 3 rows are not groups of 2 frames
    with pytest.raises(ValueError, match="not groups of 2 frames"):
        with apply_cross_frame(tiny_unet, SELF_ATTN, CrossFrameState(frames=2)):
            with torch.no_grad():
                tiny_unet(**kw)
    assert all(tiny_unet.attn_processors[n] is p for n, p in before.items())
    with pytest.raises(KeyError, match="no attention processor"):
        apply_cross_frame(tiny_unet, ("*nothing*",), CrossFrameState(frames=2))
    assert all(tiny_unet.attn_processors[n] is p for n, p in before.items())


def test_under_scale_fusion_the_anchor_is_unchanged(tiny_unet, unet_inputs):
    """Cross-frame below scale fusion (the SDXL backend's ``cross_frame = true``):
    windows are stacked window-major, so row % frames is still the frame."""
    from cinescale_post.ops.fusion import FusionState, apply_scale_fusion

    kw = _unet_batch(unet_inputs, 2)
    fs = FusionState(target_hw=(128, 128), latent_hw=(16, 16), base=64, base_latent=8)
    with torch.no_grad():
        with apply_scale_fusion(tiny_unet, SELF_ATTN, fs):
            ref = tiny_unet(**kw).sample
        with apply_cross_frame(tiny_unet, SELF_ATTN, CrossFrameState(frames=2)) as cf_h:
            with apply_scale_fusion(tiny_unet, SELF_ATTN, fs):
                both = tiny_unet(**kw).sample
    assert cf_h.state.calls > 4  # called for the global branch and for the stacked windows
    assert torch.allclose(both[0], ref[0], atol=1e-5)
    assert (both[1] - ref[1]).abs().max() > 1e-3


def test_cross_frame_fusion_plugin_registers_and_reads_the_backend_group(tiny_unet):
    import cinescale_post.builtin.temporal_fusions as tf
    from cinescale_post.pipeline.host import Host
    from ..tiny_unet import tiny_unet_model

    host = Host(load_entrypoints=False, extra_plugins=(tf,))
    fusion = host.fusions()["cross-frame"]
    assert fusion.description
    backend = tiny_unet_model(0)
    with fusion.apply(backend, None, latent_hw=(8, 8), group=(2, 1)) as h:
        assert h.state.frames == 2 and h.state.anchor == 1
        assert all(isinstance(backend.unet.attn_processors[n], CrossFrameAttnProcessor) for n in h.layers)
    assert not any(isinstance(p, CrossFrameAttnProcessor) for p in backend.unet.attn_processors.values())
    with fusion.apply(backend, None, latent_hw=(8, 8)) as h:
        assert h.state.frames == 1  # nothing to share: the processors pass every call through
