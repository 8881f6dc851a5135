"""Metrics against naive formulas and published reference values, on tiny
synthetic arrays."""

import math

import numpy as np
import pytest

import cinescale_post.qc.metrics as m

RNG = np.random.default_rng(0)


def _texture(h, w, sigma=1.5, seed=1):
    import cv2

    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), sigma)
    return (t - t.min()) / (t.max() - t.min())


def _naive_bilinear(img, x, y):
    """img sampled at (x, y), edges replicated, written out longhand."""
    h, w = img.shape[:2]
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x1]
            + (1 - fx) * fy * img[y1, x0] + fx * fy * img[y1, x1])


def test_luma_is_rec709_weighted_sum():
    rgb = RNG.random((5, 7, 3)).astype(np.float32)
    want = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    np.testing.assert_allclose(m.luma(rgb), want, atol=1e-6)


def test_warp_matches_longhand_bilinear_sampling():
    img = RNG.random((6, 8, 3)).astype(np.float32)
    flow = (RNG.random((6, 8, 2)).astype(np.float32) - 0.5) * 3
    got = m.warp(img, flow)
    for y in range(6):
        for x in range(8):
            want = _naive_bilinear(img, x + flow[y, x, 0], y + flow[y, x, 1])
            np.testing.assert_allclose(got[y, x], want, atol=2e-3)  # OpenCV: 5-bit sub-pixel weights


def test_warping_error_is_rms_over_mask():
    a = RNG.random((6, 8, 3)).astype(np.float32)
    b = RNG.random((6, 8, 3)).astype(np.float32)
    flow = np.zeros((6, 8, 2), np.float32)
    flow[..., 0] = 1.0  # integer flow: warp(b)[y, x] = b[y, x + 1], edge replicated
    mask = np.zeros((6, 8), bool)
    mask[1:5, 2:6] = True
    shifted = np.concatenate([b[:, 1:], b[:, -1:]], axis=1)
    want = math.sqrt(sum(((a[y, x] - shifted[y, x]) ** 2).mean() for y in range(6) for x in range(8) if mask[y, x])
                     / mask.sum())
    assert m.warping_error(a, b, flow, mask) == pytest.approx(want, rel=1e-5)
    assert m.warping_error(a, b, flow, np.zeros_like(mask)) == 0.0


def test_warping_error_of_a_brightness_jump_is_the_jump():
    a = _texture(24, 32)
    assert m.warping_error(a, a + 0.05, np.zeros((24, 32, 2), np.float32)) == pytest.approx(0.05, rel=1e-4)


def test_added_error_is_quadrature_difference():
    assert m.added_error(0.05, 0.03) == pytest.approx(0.04)
    assert m.added_error(0.03, 0.05) == 0.0


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_source_flow_recovers_a_translation(method):
    big = _texture(80, 96, sigma=2.0)
    a = big[10:58, 10:74]
    b = big[8:56, 13:77]  # content moves 3 px left and 2 px down from a to b
    flow = m.source_flow(a, b, method)
    inner = flow[12:-12, 12:-12]
    assert np.median(inner[..., 0]) == pytest.approx(-3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(2.0, abs=0.25)
    # ... and warping b back along it reproduces a where the content exists in both.
    assert m.warping_error(a[12:-12, 12:-12], m.warp(b, flow)[12:-12, 12:-12],
                           np.zeros((24, 40, 2), np.float32)) < 0.02


def test_source_flow_rejects_unknown_method_and_shapes():
    a = _texture(16, 16)
    with pytest.raises(ValueError, match="farneback"):
        m.source_flow(a, a, "lucas")
    with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\)"):
        m.source_flow(a[..., 0], a)
    with pytest.raises(ValueError, match="share"):
        m.source_flow(a, a[:8])


def test_consistency_mask_keeps_consistent_and_drops_occluded_and_outside():
    h, w = 10, 12
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 2.0
    bwd = np.zeros((h, w, 2), np.float32)
    bwd[..., 0] = -2.0
    mask = m.consistency_mask(fwd, bwd)
    assert mask[:, : w - 2].all() and not mask[:, w - 2:].any()  # targets beyond the right edge
    bwd[4:6, 5:9] = 3.0  # backward flow disagrees there: an occlusion
    mask = m.consistency_mask(fwd, bwd)
    assert not mask[4:6, 3:7].any() and mask[0, 3:7].all()


def test_resize_flow_scales_vectors():
    f = np.zeros((4, 6, 2), np.float32)
    f[..., 0], f[..., 1] = 1.0, -2.0
    up = m.resize_flow(f, (12, 12))
    assert up.shape == (12, 12, 2)
    np.testing.assert_allclose(up[..., 0], 2.0)
    np.testing.assert_allclose(up[..., 1], -6.0)


def test_lab_of_known_colours():
    lab = m.rgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(lab[1], [53.2408, 80.0925, 67.2032], atol=1e-3)  # sRGB red (D65)
    np.testing.assert_allclose(lab[2], [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(lab[3], [53.3890, 0.0, 0.0], atol=1e-3)  # sRGB mid grey
    lin = m.rgb_to_lab(np.array([[0.2140411, 0.2140411, 0.2140411]]), transfer="linear")
    np.testing.assert_allclose(lin[0], lab[3], atol=1e-3)  # same grey, linear-light input


# Sharma, Wu & Dalal (2005), Table 1: includes the hue-wrap pairs that catch
# common implementation mistakes (pairs 15 and 19 differ from 14 and 18 only in
# the fourth decimal of b*).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, -0.001, 2.49), (50.0, 0.0011, -2.49), 4.7461),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
]


def test_ciede2000_matches_sharma_reference_pairs():
    a = np.array([p[0] for p in SHARMA])
    b = np.array([p[1] for p in SHARMA])
    np.testing.assert_allclose(m.delta_e_2000(a, b), [p[2] for p in SHARMA], atol=5e-5)
    np.testing.assert_allclose(m.delta_e_2000(b, a), [p[2] for p in SHARMA], atol=5e-5)  # symmetric


def test_cie76_is_euclidean():
    a, b = np.array([50.0, 10.0, -3.0]), np.array([53.0, 6.0, -3.0])
    assert m.delta_e_76(a, b) == pytest.approx(5.0)


def test_colour_drift_mean_and_p95():
    src = _texture(12, 16)
    out = src.copy()
    out[:6] += 0.1  # the top half drifts
    de = m.delta_e_2000(m.rgb_to_lab(out), m.rgb_to_lab(src)).ravel()
    mean, p95 = m.colour_drift(out, src)
    s = np.sort(de)
    pos = 0.95 * (de.size - 1)  # linear interpolation between order statistics
    lo = int(pos)
    assert mean == pytest.approx(de.mean())
    assert p95 == pytest.approx(s[lo] + (pos - lo) * (s[lo + 1] - s[lo]))
    assert m.colour_drift(src, src) == (0.0, 0.0)
    mean76, _ = m.colour_drift(out, src, formula="de76")
    assert mean76 == pytest.approx(m.delta_e_76(m.rgb_to_lab(out), m.rgb_to_lab(src)).mean())
    with pytest.raises(ValueError, match="de2000"):
        m.colour_drift(out, src, formula="de94")


def test_hf_energy_and_detail_gain():
    import cv2

    flat = np.full((32, 32, 3), 0.4, np.float32)
    assert m.hf_energy(flat) == pytest.approx(0.0, abs=1e-12)
    assert m.detail_gain(flat, flat) == pytest.approx(1.0)
    ref = m.lanczos(_texture(16, 16, sigma=1.0), (32, 32))
    y = m.luma(ref)
    want = float(((y - cv2.GaussianBlur(y, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)) ** 2).mean())
    assert m.hf_energy(ref) == pytest.approx(want, rel=1e-5)
    assert m.detail_gain(ref, ref) == pytest.approx(1.0)
    sharper = ref + RNG.normal(0, 0.02, ref.shape).astype(np.float32)
    softer = cv2.GaussianBlur(ref, (0, 0), 1.5)
    assert m.detail_gain(sharper, ref) > 1.2
    assert m.detail_gain(softer, ref) < 0.5


def test_isolated_flicker_is_min_of_neighbouring_transitions():
    d = np.array([0.0, 0.05, 0.05, 0.0, 0.0, 0.03, 0.0, np.nan, 0.0])
    got = m.isolated(d)
    want = [min(x for x in (d[k - 1] if k else None, d[k] if k < len(d) else None)
                if x is not None and not np.isnan(x)) for k in range(len(d) + 1)]
    np.testing.assert_allclose(got, want)
    assert got[2] == 0.05  # the spike frame
    assert got[5] == 0.0 and got[6] == 0.0  # a single step belongs to no frame


def _naive_seam(d, t, radius):
    near = sorted(d[i] for i in range(max(0, t - radius), min(len(d), t + radius + 1)) if i != t)
    k = len(near)
    med = near[k // 2] if k % 2 else (near[k // 2 - 1] + near[k // 2]) / 2
    spike = max(min(d[t - 1], d[t]) if t > 0 else d[t], min(d[t], d[t + 1]) if t + 1 < len(d) else d[t])
    v = d[t] - max(0.0, spike - med)
    return v - med, v / max(med, 1e-3)


def test_seam_scores_against_neighbourhood_median():
    d = [0.01, 0.012, 0.011, 0.06, 0.01, 0.013, 0.012]
    for t, radius in [(3, 3), (1, 1), (0, 2), (6, 3), (2, 2)]:
        got, = m.seam_scores(np.array(d), [t], radius=radius)
        assert got == pytest.approx(_naive_seam(d, t, radius)), (t, radius)
    (excess, ratio), = m.seam_scores(np.array(d), [3])
    assert excess > 0.045 and ratio > 4  # the step stands out


def test_a_frame_flickering_at_a_boundary_is_not_a_seam():
    step = np.array([0.0, 0.0, 0.0, 0.04, 0.0, 0.0, 0.0])  # frames 4.. shifted: a seam at t=3
    spike = np.array([0.0, 0.0, 0.04, 0.04, 0.0, 0.0, 0.0])  # frame 3 alone jumps, next to t=3
    (step_excess, _), = m.seam_scores(step, [3])
    (spike_excess, _), = m.seam_scores(spike, [3])
    assert step_excess == pytest.approx(0.04) and spike_excess == pytest.approx(0.0)
