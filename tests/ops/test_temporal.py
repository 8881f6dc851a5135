import math

import numpy as np
import pytest
import torch

from cinescale_post.ops.temporal import (anchor_low_frequencies, chain_flows, compose_flow, consistent, derive_seed,
                                         flow_noise, key_frames, key_index, lowpass, lowpass_taps, noise_fields,
                                         optical_flow, shrink_flow, shrink_mask, warp_noise)


def _texture(h=48, w=64, seed=0, pad=16):
    import cv2

    g = np.random.default_rng(seed)
    t = cv2.GaussianBlur(g.random((h + 2 * pad, w + 2 * pad, 3)).astype(np.float32), (0, 0), 1.5)
    return (t - t.min()) / (t.max() - t.min())


# ---------------------------------------------------------------- key frames


def test_key_index_is_a_fixed_grid():
    assert [key_index(i, 3) for i in range(7)] == [0, 0, 0, 3, 3, 3, 6]
    assert key_index(5, 1) == 5
    with pytest.raises(ValueError):
        key_index(3, 0)


def test_key_frames_depend_only_on_the_frames_present():
    full = key_frames(range(0, 30), 8)
    sub = key_frames([16, 17, 18, 19], 8)  # a window that starts on the grid
    assert all(sub[i] == full[i] == (16, True) for i in sub)
    shuffled = key_frames([19, 17, 16, 18, 17], 8)
    assert shuffled == sub
    # a window that starts off the grid: deterministic fallback, flagged
    off = key_frames([10, 11, 12, 16, 17], 8)
    assert off[10] == (10, False) and off[12] == (10, False)
    assert off[16] == (16, True) and off[17] == (16, True)


def test_derived_seeds_and_fields_are_deterministic_and_distinct():
    assert derive_seed(5, "renoise") == derive_seed(5, "renoise") != derive_seed(5, "fresh")
    a = noise_fields(derive_seed(5, "renoise"), [(1, 4, 8, 8), (1, 4, 16, 16)])
    b = noise_fields(derive_seed(5, "renoise"), [(1, 4, 8, 8), (1, 4, 16, 16)])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = noise_fields(derive_seed(5, "fresh"), [(1, 4, 8, 8)])
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------- warped noise


def test_warp_zero_flow_and_integer_shift_match_naive_indexing():
    n = torch.randn(2, 4, 10, 12, generator=torch.Generator().manual_seed(0))
    zero = np.zeros((10, 12, 2), np.float32)
    assert torch.equal(warp_noise(n, zero), n)
    flow = zero.copy()
    flow[..., 0], flow[..., 1] = 2.0, -1.0  # cell (x, y) comes from (x + 2, y - 1)
    for mode in ("bilinear", "nearest"):
        out = warp_noise(n, flow, mode=mode)
        assert torch.allclose(out[:, :, 1:, :10], n[:, :, :9, 2:], atol=1e-6)


def test_warp_half_cell_is_the_renormalised_average():
    n = torch.randn(1, 2, 6, 8, generator=torch.Generator().manual_seed(1))
    flow = np.zeros((6, 8, 2), np.float32)
    flow[..., 0] = 0.5
    out = warp_noise(n, flow)
    naive = (n[..., :, :-1] + n[..., :, 1:]) / math.sqrt(2.0)
    assert torch.allclose(out[..., :, :-1], naive, atol=1e-6)
    # the quarter case: weights 0.75 / 0.25 over sqrt(0.75^2 + 0.25^2)
    flow[..., 0] = 0.25
    out = warp_noise(n, flow)
    w = torch.tensor([0.75, 0.25])
    naive = (w[0] * n[..., :, :-1] + w[1] * n[..., :, 1:]) / w.norm()
    assert torch.allclose(out[..., :, :-1], naive, atol=1e-6)


def _normality(x: torch.Tensor) -> tuple[float, float, float]:
    x = x.flatten().double()
    return float(x.mean()), float(x.std()), float((x.abs() < 1).double().mean())


def test_warped_noise_stays_unit_gaussian_under_fractional_flow():
    g = torch.Generator().manual_seed(2)
    n = torch.randn(1, 4, 96, 96, generator=g)
    rng = np.random.default_rng(0)
    import cv2

    flow = cv2.GaussianBlur(rng.normal(0, 6, (96, 96, 2)).astype(np.float32), (0, 0), 8) * 8  # smooth, fractional
    assert 0.2 < np.abs(flow - np.round(flow)).mean() < 0.3  # uniform fractions: 0.25
    out = warp_noise(n, flow, fresh=torch.randn(1, 4, 96, 96, generator=g))
    mean, std, within = _normality(out)
    assert abs(mean) < 0.02 and abs(std - 1.0) < 0.02 and abs(within - 0.6827) < 0.01
    # the same bilinear blend WITHOUT renormalisation loses variance: what the test guards against
    gy, gx = np.mgrid[0:96, 0:96].astype(np.float32)
    grid = torch.from_numpy(np.stack([(gx + flow[..., 0]) / 95 * 2 - 1, (gy + flow[..., 1]) / 95 * 2 - 1], -1))
    plain = torch.nn.functional.grid_sample(n, grid[None], align_corners=True, padding_mode="border")
    assert _normality(plain)[1] < 0.9


def test_chained_flow_is_warped_once_because_rewarping_inflates_variance():
    """Renormalisation is exact for i.i.d. input only: re-warping a warped
    field (correlated neighbours) inflates its variance, which is why a frame's
    field is the *key* field warped once along the composed flow."""
    n = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(3))
    step = np.zeros((64, 64, 2), np.float32)
    step[..., 0], step[..., 1] = 0.37, -0.21
    acc = np.zeros_like(step)
    x = n
    for _ in range(6):
        acc, _ = compose_flow(step, acc)
        x = warp_noise(x, step, fresh=torch.zeros_like(x))
    once = warp_noise(n, acc)
    assert np.allclose(acc[20:40, 20:40], [6 * 0.37, -6 * 0.21], atol=1e-4)
    assert abs(_normality(once[..., 8:-8, 8:-8])[1] - 1.0) < 0.03
    assert _normality(x[..., 8:-8, 8:-8])[1] > 1.1


def test_fresh_noise_fills_invalid_and_out_of_frame_cells():
    n = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    fresh = torch.full_like(n, 7.0)
    flow = np.zeros((6, 6, 2), np.float32)
    flow[..., 0] = 2.0  # the last two columns come from outside
    valid = np.ones((6, 6), bool)
    valid[0, 0] = False
    out = warp_noise(n, flow, valid, fresh)
    assert (out[..., 4:] == 7.0).all() and out[0, 0, 0, 0] == 7.0
    assert torch.equal(out[0, 0, 1:, :4], n[0, 0, 1:, 2:])
    nearest = warp_noise(n, flow * 0.9, mode="nearest")
    assert set(nearest.flatten().tolist()) <= set(n.flatten().tolist())


def test_warp_noise_checks_shapes():
    n = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"flow: expected shape \(8, 8, 2\)"):
        warp_noise(n, np.zeros((8, 9, 2), np.float32))
    with pytest.raises(ValueError, match="noise"):
        warp_noise(n[0], np.zeros((8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="mode"):
        warp_noise(n, np.zeros((8, 8, 2), np.float32), mode="cubic")


# ---------------------------------------------------------------- flow


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_optical_flow_recovers_a_known_shift(method):
    t = _texture()
    a, b = t[16:64, 16:80], t[16:64, 13:77]  # content moves 3 px to the right
    f = optical_flow(a, b, method)
    assert f.shape == (48, 64, 2) and f.dtype == np.float32
    inner = f[8:-8, 8:-8]
    assert abs(np.median(inner[..., 0]) - 3.0) < 0.3 and abs(np.median(inner[..., 1])) < 0.3
    with pytest.raises(ValueError, match="flow method"):
        optical_flow(a, b, "lk")


def test_compose_flow_matches_the_naive_chain():
    h, w = 12, 16
    step = np.zeros((h, w, 2), np.float32)
    step[..., 0] = -1.0
    acc = np.zeros((h, w, 2), np.float32)
    acc[..., 0] = np.arange(w, dtype=np.float32)[None, :] * 0.1  # varies along x
    d, v = compose_flow(step, acc)
    # D(x) = step(x) + acc(x + step(x)) = -1 + 0.1 * (x - 1)
    xs = np.arange(1, w)
    assert np.allclose(d[3, 1:, 0], -1 + 0.1 * (xs - 1), atol=1e-5)
    assert not v[:, 0].any() and v[:, 1:].all()  # column 0 points outside the frame
    acc_valid = np.ones((h, w), bool)
    acc_valid[:, 5] = False
    _, v2 = compose_flow(step, acc, None, acc_valid)
    assert not v2[:, 6].any() and v2[:, 7].all()


def test_chain_flows_follow_a_pan_back_to_the_key_frame():
    t = _texture(seed=1)
    frames = [t[16:64, 16 - 2 * k:80 - 2 * k] for k in range(4)]  # content moves +2 px per frame
    chain = chain_flows(frames)
    assert len(chain) == 4 and not chain[0][0].any() and chain[0][1].all()
    for k, (flow, valid) in enumerate(chain):
        inner = flow[8:-8, 12:-8]
        assert abs(np.median(inner[..., 0]) + 2 * k) < 0.4, k
        assert valid[8:-8, 12:-8].mean() > 0.9
    fwd, bwd = optical_flow(frames[0], frames[1]), optical_flow(frames[1], frames[0])
    assert consistent(fwd, bwd)[8:-8, 8:-8].mean() > 0.9
    flipped = -np.flip(bwd, axis=1)  # nonsense backward flow
    assert consistent(fwd, flipped).mean() < 0.5


def test_shrink_flow_scales_vectors_and_masks_by_area():
    f = np.zeros((16, 32, 2), np.float32)
    f[..., 0], f[..., 1] = 8.0, 4.0
    s = shrink_flow(f, (4, 2))
    assert s.shape == (2, 4, 2) and np.allclose(s[..., 0], 1.0) and np.allclose(s[..., 1], 0.5)
    m = np.zeros((16, 32), bool)
    m[:, :12] = True  # cell 0 all valid, cell 1 half valid, others invalid
    assert shrink_mask(m, (4, 2))[0].tolist() == [True, True, False, False]


def test_flow_noise_per_stage_and_sub_range_reproducibility():
    t = _texture(seed=2)
    frames = [t[16:48, 16 - k:80 - k] for k in range(6)]  # 32x64 source, 1 px per frame
    keys = [torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(9)),
            torch.randn(1, 4, 16, 32, generator=torch.Generator().manual_seed(10))]
    fresh = [torch.zeros_like(k) for k in keys]
    full = chain_flows(frames)  # key frame 0, frames 0..5
    again = chain_flows(frames[:3])  # a job that stops at frame 2
    a = flow_noise(keys, *full[2], fresh)
    b = flow_noise(keys, *again[2], fresh)
    assert [tuple(x.shape) for x in a] == [(1, 4, 8, 16), (1, 4, 16, 32)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # frame 2 shows the content 2 px to the right = 1 cell of the 16x32 stage: the field moved with it
    moved = a[1][..., 3:-3, 4:-3].flatten()
    corr = torch.corrcoef(torch.stack([moved, keys[1][..., 3:-3, 3:-4].flatten()]))[0, 1]
    still = torch.corrcoef(torch.stack([moved, keys[1][..., 3:-3, 4:-3].flatten()]))[0, 1]
    assert corr > 0.9 and abs(still) < 0.2


# ---------------------------------------------------------------- low frequencies


def test_lowpass_matches_a_naive_convolution():
    x = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    for kind, sigma in (("gaussian", 1.3), ("box", 1.0)):
        taps = lowpass_taps(sigma, kind).double().numpy()
        r = len(taps) // 2
        a = x.double().numpy()[0]
        naive = np.zeros_like(a)
        for c in range(2):
            for i in range(9):
                for j in range(11):
                    acc = 0.0
                    for di in range(-r, r + 1):
                        for dj in range(-r, r + 1):
                            ii, jj = min(max(i + di, 0), 8), min(max(j + dj, 0), 10)
                            acc += taps[di + r] * taps[dj + r] * a[c, ii, jj]
                    naive[c, i, j] = acc
        assert np.allclose(lowpass(x, sigma, kind).numpy()[0], naive, atol=1e-5), kind
    taps = lowpass_taps(2.0, "box")
    assert taps.numel() % 2 == 1 and abs(taps.numel() / math.sqrt(12) - 2.0) < 0.5
    g = lowpass_taps(2.0)
    i = torch.arange(g.numel()) - g.numel() // 2
    assert abs(float((g * i * i).sum()).__pow__(0.5) - 2.0) < 0.05
    with pytest.raises(ValueError, match="kind"):
        lowpass(x, 1.0, "median")
    with pytest.raises(ValueError, match="sigma"):
        lowpass(x, 0.0)


def test_anchoring_removes_a_colour_cast_and_keeps_added_detail():
    g = torch.Generator().manual_seed(1)
    src = lowpass(torch.rand(1, 3, 32, 48, generator=g), 3.0)
    detail = 0.1 * torch.tensor([1.0, -1.0]).repeat(24)[None, None, None, :].expand(1, 3, 32, 48)  # 2-px period
    cast = torch.tensor([0.08, -0.05, 0.02]).view(1, 3, 1, 1)
    render = src + detail + cast
    assert torch.equal(anchor_low_frequencies(render, src, 0.0, 2.0), render)
    full = anchor_low_frequencies(render, src, 1.0, 2.0)
    half = anchor_low_frequencies(render, src, 0.5, 2.0)
    # the formula, written out
    assert torch.allclose(half, render + 0.5 * (lowpass(src, 2.0) - lowpass(render, 2.0)), atol=1e-6)
    # a constant cast goes entirely (strength 1) or half-way (0.5); the 2-px detail stays
    assert torch.allclose((full - src - detail).mean((2, 3)), torch.zeros(1, 3), atol=2e-3)
    assert torch.allclose((half - src - detail).mean((2, 3)), 0.5 * cast.view(1, 3), atol=2e-3)
    hf = full - lowpass(full, 2.0)
    assert float((hf * detail).sum() / (detail * detail).sum()) > 0.9
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            anchor_low_frequencies(render, src, bad, 2.0)
    with pytest.raises(ValueError, match="source_up"):
        anchor_low_frequencies(render, src[..., :16], 1.0, 2.0)
