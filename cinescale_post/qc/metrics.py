"""Quality metrics of a render against its source: pure functions on numpy arrays.

Conventions (as at every boundary of the package): images are ``(H, W, 3)``
float32 R'G'B' as decoded; flows are ``(H, W, 2)`` float32 ``(dx, dy)`` in
pixels, such that pixel ``(x, y)`` of frame t is at ``(x + dx, y + dy)`` in
frame t+1; masks are ``(H, W)`` bool. No state, no I/O.

What each number means:

* **flicker** -- warping error (Lai et al., "Learning blind video temporal
  consistency", 2018): warp output frame t+1 back onto frame t along the
  *source's* optical flow (upscaled to the output), and take the RMS
  difference over pixels where the flow is trustworthy (forward-backward
  consistent, inside the frame). The source's own warping error along the
  same flow (occlusions, lighting, flow mistakes) is removed in quadrature,
  so what is left is what the render added: ``sqrt(max(0, e_out^2 - e_src^2))``.
  Unit: code values (1.0 = full scale; 0.02 is about 5/255).
* **seam** -- the flicker of the transition across a chunk boundary minus the
  median flicker of the transitions around it (less what a frame that jumps
  out and back right at the boundary explains: that is the frame's flicker).
* **colour drift** -- CIEDE2000 (default; CIE76 available) between the
  output and the source, both shrunk by area averaging to 1/8 of the source
  size (the caller's choice; so added detail and sub-pixel registration
  average out and only colour remains); mean and 95th percentile per frame.
* **detail gain** -- high-frequency energy (luma minus its Gaussian blur,
  sigma 1 output pixel) of the output divided by that of a Lanczos upscale of
  the source: 1.0 adds nothing, < 1 is softer than Lanczos.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "added_error",
    "colour_drift",
    "consistency_mask",
    "delta_e_76",
    "delta_e_2000",
    "detail_gain",
    "energy_ratio",
    "hf_energy",
    "isolated",
    "lanczos",
    "luma",
    "resize_flow",
    "rgb_to_lab",
    "seam_scores",
    "shrink",
    "source_flow",
    "warp",
    "warping_error",
    "warping_errors",
]

# Rec.709 luma weights: the flow and the detail measure only need a
# brightness image, not colour.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)

# Forward-backward consistency (Sundaram, Brox & Keutzer 2010): a pixel is an
# occlusion or a flow mistake when going forward then backward does not come
# back within this tolerance (|f + b|^2 < A (|f|^2 + |b|^2) + B, in pixels^2).
_FB_A, _FB_B = 0.01, 0.5

# RGB -> XYZ (D65) for the two primaries sets a plate is likely to carry.
_RGB_TO_XYZ = {
    "bt709": np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]], np.float64),
    "bt2020": np.array([[0.6369580, 0.1446169, 0.1688810],
                        [0.2627002, 0.6779981, 0.0593017],
                        [0.0000000, 0.0280727, 1.0609851]], np.float64),
}
_D65 = np.array([0.95047, 1.0, 1.08883], np.float64)


def _check_image(name: str, a: np.ndarray, channels: int | None = 3) -> None:
    """One shape check for every function, so messages are uniform."""
    ok = a.ndim == 3 and a.shape[-1] == channels if channels else a.ndim == 2
    if not ok:
        want = f"(H, W, {channels})" if channels else "(H, W)"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(a.shape)}")


def _same_hw(*arrays: np.ndarray) -> None:
    hw = {a.shape[:2] for a in arrays}
    if len(hw) != 1:
        raise ValueError(f"arrays must share (H, W), got {sorted(hw)}")


# ---------------------------------------------------------------- flow


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 -> (H, W) float32 Rec.709 luma of the given values."""
    _check_image("rgb", rgb)
    return np.asarray(rgb, np.float32) @ _LUMA


def _flow_u8(rgb: np.ndarray) -> np.ndarray:
    # Flow engines take 8-bit single-channel images; scene-linear values
    # above 1 are clipped, which only matters in blown-out highlights.
    return np.clip(luma(rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def source_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "dis") -> np.ndarray:
    """Optical flow from ``prev`` to ``nxt``: (H, W, 3) x2 -> (H, W, 2) float32.

    ``method``: "dis" (OpenCV DIS, medium preset: fast and robust) or
    "farneback" (used automatically when this OpenCV build has no DIS).

    >>> a = np.zeros((48, 64, 3), np.float32); a[10:30, 10:30] = 1
    >>> source_flow(a, np.roll(a, 2, axis=1)).shape
    (48, 64, 2)
    """
    import cv2

    _check_image("prev", prev)
    _check_image("nxt", nxt)
    _same_hw(prev, nxt)
    a, b = _flow_u8(prev), _flow_u8(nxt)
    if method == "dis" and hasattr(cv2, "DISOpticalFlow_create"):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(a, b, None).astype(np.float32)
    if method not in ("dis", "farneback"):
        raise ValueError(f"flow method must be 'dis' or 'farneback', not {method!r}")
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0).astype(np.float32)


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling positions (x + dx, y + dy) of a flow, as ``remap``
    takes them; built once, several images can be warped along one flow.
    (OpenCV's fixed-point maps would be a little faster but round positions
    to 1/32 pixel before ``remap``'s own rounding: visibly off on sharp detail.)"""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def _sample(img: np.ndarray, maps) -> np.ndarray:
    import cv2

    return cv2.remap(np.asarray(img, np.float32), maps[0], maps[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels whose flow is trustworthy: (H, W, 2) x2 -> (H, W) bool.

    True where following ``forward`` then ``backward`` returns within the
    Sundaram et al. tolerance and the forward target lies inside the frame.
    """
    _check_image("forward", forward, 2)
    _check_image("backward", backward, 2)
    _same_hw(forward, backward)
    h, w = forward.shape[:2]
    back_at = _sample(backward, _maps(forward))
    loop = forward + back_at
    ok = (loop ** 2).sum(-1) < _FB_A * ((forward ** 2).sum(-1) + (back_at ** 2).sum(-1)) + _FB_B
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = gx + forward[..., 0], gy + forward[..., 1]
    return ok & (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale a flow field to ``size`` = (width, height): (h, w, 2) -> (H, W, 2).

    Vectors are multiplied by the scale factors, so they stay in pixels of
    the new size.
    """
    import cv2

    _check_image("flow", flow, 2)
    h, w = flow.shape[:2]
    W, H = size
    if (W, H) == (w, h):
        return np.asarray(flow, np.float32)
    out = cv2.resize(np.asarray(flow, np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= W / w
    out[..., 1] *= H / h
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool -> (H, W) bool, nearest neighbour."""
    import cv2

    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Frame t+1 pulled back onto frame t: ``out[y, x] = img[y + dy, x + dx]``.

    (H, W, C) float32, (H, W, 2) -> (H, W, C) float32 (bilinear, edges
    replicated).
    """
    _check_image("flow", flow, 2)
    _same_hw(img, flow)
    return _sample(img, _maps(flow)).reshape(img.shape)


def warping_errors(pairs: list[tuple[np.ndarray, np.ndarray]], flow: np.ndarray,
                   mask: np.ndarray | None = None) -> list[float]:
    """:func:`warping_error` of several (a, b) pairs along one flow, building
    the sampling maps once: [((H, W, 3), (H, W, 3))...], (H, W, 2), (H, W) -> [float]."""
    import cv2

    _check_image("flow", flow, 2)
    maps = _maps(flow)
    if mask is not None and not mask.any():
        return [0.0] * len(pairs)
    m8 = None if mask is None else np.ascontiguousarray(mask, np.uint8)
    out = []
    for a, b in pairs:
        _check_image("a", a)
        _check_image("b", b)
        _same_hw(a, b, flow)
        # OpenCV's element-wise ops and masked mean: the numpy spelling,
        # ((a - w) ** 2).mean(-1)[mask].mean(), is 4x slower at 4K.
        d = cv2.subtract(np.asarray(a, np.float32), _sample(b, maps))
        sq = cv2.transform(cv2.multiply(d, d), np.full((1, 3), 1 / 3, np.float32))
        out.append(float(np.sqrt(max(0.0, cv2.mean(sq, mask=m8)[0]))))
    return out


def warping_error(a: np.ndarray, b: np.ndarray, flow: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS of ``a - warp(b, flow)`` over ``mask`` (all channels).

    (H, W, 3), (H, W, 3), (H, W, 2), (H, W) bool -> float (code values).
    An empty mask gives 0.0 (nothing could be compared).

    >>> a = np.full((4, 4, 3), 0.5, np.float32)
    >>> round(warping_error(a, a + 0.1, np.zeros((4, 4, 2), np.float32)), 3)
    0.1
    """
    return warping_errors([(a, b)], flow, mask)[0]


def added_error(e_out: float, e_src: float) -> float:
    """The part of ``e_out`` the source does not explain: ``sqrt(max(0, e_out^2 - e_src^2))``.

    Independent error sources add in quadrature, so a render that is the
    upscaled source plus a brightness jump ``c`` gives about ``c``.
    """
    return float(np.sqrt(max(0.0, e_out * e_out - e_src * e_src)))


# ---------------------------------------------------------------- colour


def rgb_to_lab(rgb: np.ndarray, *, transfer: str = "srgb", primaries: str = "bt709") -> np.ndarray:
    """(..., 3) R'G'B' -> (..., 3) float64 CIELAB (D65 white, L in [0, 100] for [0, 1] input).

    ``transfer``: "srgb" (IEC 61966-2-1 curve; used for video and PNG/TIFF
    values, whose display curves differ from it too little to matter for a
    *difference*) or "linear" (scene-linear EXR). ``primaries``: "bt709"
    (also sRGB) or "bt2020". Negative values are clipped to 0 first.
    """
    if primaries not in _RGB_TO_XYZ:
        raise ValueError(f"primaries must be one of {sorted(_RGB_TO_XYZ)}, not {primaries!r}")
    v = np.clip(np.asarray(rgb, np.float64), 0.0, None)
    if transfer == "srgb":
        lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    elif transfer == "linear":
        lin = v
    else:
        raise ValueError(f"transfer must be 'srgb' or 'linear', not {transfer!r}")
    xyz = lin @ _RGB_TO_XYZ[primaries].T / _D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def delta_e_76(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Euclidean CIELAB distance: (..., 3) x2 -> (...)."""
    return np.sqrt(((np.asarray(lab1, np.float64) - lab2) ** 2).sum(-1))


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 (kL = kC = kH = 1): (..., 3) x2 -> (...).

    Follows Sharma, Wu & Dalal (2005), including their notes on hue angles
    when a chroma is zero; their test pairs give e.g. 2.0425 for
    (50, 2.6772, -79.7751) vs (50, 0, -82.7485).
    """
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    C1, C2 = np.hypot(a1, b1), np.hypot(a2, b2)
    Cm7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - np.sqrt(Cm7 / (Cm7 + 25.0 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    zero = (C1p * C2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(zero, 0.0, dh)
    dLp, dCp = L2 - L1, C2p - C1p
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh / 2))
    Lpm, Cpm = (L1 + L2) / 2, (C1p + C2p) / 2
    hsum = h1p + h2p
    hpm = np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hpm = np.where(zero, hsum, hpm)
    T = (1 - 0.17 * np.cos(np.radians(hpm - 30)) + 0.24 * np.cos(np.radians(2 * hpm))
         + 0.32 * np.cos(np.radians(3 * hpm + 6)) - 0.20 * np.cos(np.radians(4 * hpm - 63)))
    dtheta = 30 * np.exp(-(((hpm - 275) / 25) ** 2))
    Cpm7 = Cpm ** 7
    Rc = 2 * np.sqrt(Cpm7 / (Cpm7 + 25.0 ** 7))
    Sl = 1 + 0.015 * (Lpm - 50) ** 2 / np.sqrt(20 + (Lpm - 50) ** 2)
    Sc = 1 + 0.045 * Cpm
    Sh = 1 + 0.015 * Cpm * T
    Rt = -np.sin(np.radians(2 * dtheta)) * Rc
    return np.sqrt((dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh))


def colour_drift(output_small: np.ndarray, source: np.ndarray, *, formula: str = "de2000",
                 transfer: str = "srgb", primaries: str = "bt709") -> tuple[float, float]:
    """(mean, p95) colour difference of two same-size images: (H, W, 3) x2 -> (float, float).

    ``output_small`` is the render already shrunk to the source's size
    (:func:`shrink`). ``formula``: "de2000" or "de76".
    """
    _check_image("output_small", output_small)
    _check_image("source", source)
    _same_hw(output_small, source)
    fn = {"de2000": delta_e_2000, "de76": delta_e_76}.get(formula)
    if fn is None:
        raise ValueError(f"formula must be 'de2000' or 'de76', not {formula!r}")
    de = fn(rgb_to_lab(output_small, transfer=transfer, primaries=primaries),
            rgb_to_lab(source, transfer=transfer, primaries=primaries))
    return float(de.mean()), float(np.percentile(de, 95))


# ---------------------------------------------------------------- detail


def lanczos(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, C) -> (H, W, C) float32 Lanczos (8x8) resize to ``size`` = (width, height)."""
    import cv2

    out = cv2.resize(np.asarray(rgb, np.float32), size, interpolation=cv2.INTER_LANCZOS4)
    return out.reshape(size[1], size[0], *rgb.shape[2:])


def shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (h, w, C) float32 area-average resize to ``size`` = (width, height)."""
    import cv2

    out = cv2.resize(np.asarray(rgb, np.float32), size, interpolation=cv2.INTER_AREA)
    return out.reshape(size[1], size[0], *rgb.shape[2:])


def hf_energy(rgb: np.ndarray, sigma: float = 1.0) -> float:
    """Mean squared high-pass of luma: ``mean((Y - gauss(Y, sigma))^2)``; (H, W, 3) -> float."""
    import cv2

    y = luma(rgb)
    return float(((y - cv2.GaussianBlur(y, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)) ** 2).mean())


def detail_gain(output: np.ndarray, reference: np.ndarray, sigma: float = 1.0) -> float:
    """``hf_energy(output) / hf_energy(reference)``: (H, W, 3) x2 -> float.

    ``reference`` is the Lanczos upscale of the source at the output size.
    Two flat images give 1.0 (a small floor keeps the ratio finite).
    """
    _same_hw(output, reference)
    return energy_ratio(hf_energy(output, sigma), hf_energy(reference, sigma))


def energy_ratio(output: float, reference: float) -> float:
    """:func:`detail_gain` from two :func:`hf_energy` values (a small floor
    keeps the ratio finite; two flat images give 1.0)."""
    floor = 1e-10
    return (output + floor) / (reference + floor)


# ---------------------------------------------------------------- sequences


def isolated(transitions: np.ndarray) -> np.ndarray:
    """Per-frame flicker from per-transition flicker: (T,) -> (T + 1,).

    Frame k gets ``min(d[k-1], d[k])`` (the end frames get their only
    transition): a frame that jumps out and back scores high, while a
    single step (a seam: every later frame shifted) scores low on both sides,
    because it belongs to the boundary, not to a frame. NaN transitions
    (not comparable) are ignored.

    >>> isolated(np.array([0.0, 0.1, 0.1, 0.0])).tolist()
    [0.0, 0.0, 0.1, 0.0, 0.0]
    """
    d = np.asarray(transitions, np.float64)
    before = np.concatenate([[np.nan], d])
    after = np.concatenate([d, [np.nan]])
    out = np.fmin(before, after)  # fmin ignores one NaN
    return np.where(np.isnan(out), 0.0, out)


def seam_scores(transitions: np.ndarray, boundaries: list[int], radius: int = 3) -> list[tuple[float, float]]:
    """Score each boundary against its neighbourhood: (T,), [t...] -> [(excess, ratio)].

    ``boundaries`` index transitions (transition t joins frames t and t+1).
    With ``med`` the median of the other transitions within ``radius``:
    a frame at the boundary that jumps out and back (:func:`isolated` above
    ``med``) explains that much of ``d[t]`` -- it is that frame's flicker, not
    a seam -- so ``v = d[t] - max(0, spike - med)``; then ``excess = v - med``
    and ``ratio = v / max(med, 1e-3)``. A boundary without comparable
    neighbours is scored against 0.
    """
    d = np.asarray(transitions, np.float64)
    iso = isolated(d)
    out = []
    for t in boundaries:
        lo, hi = max(0, t - radius), min(len(d), t + radius + 1)
        near = [d[i] for i in range(lo, hi) if i != t and not np.isnan(d[i])]
        med = float(np.median(near)) if near else 0.0
        v = 0.0 if np.isnan(d[t]) else float(d[t])
        v -= max(0.0, max(iso[t], iso[t + 1]) - med)
        out.append((v - med, v / max(med, 1e-3)))
    return out
