"""Exact R'G'B' <-> Y'CbCr conversion, done here instead of in swscale.

Why: swscale is ~0.4 % off at 10-bit limited range (RGB 1.0 -> Y' 943, not
940; Y' 940 -> 0.9962), and it decodes untagged HD with the BT.601 matrix
(reference/MEDIA_IO.md section 2.3). These functions are pure numpy.

Conventions: ``rgb`` is (H, W, 3) float32 non-linear R'G'B' in [0, 1];
planes are ``uint16`` code values of ``bits`` depth. Chroma subsampling
uses a box filter on encode and sample repetition on decode (flat colours
round-trip exactly).
"""

from __future__ import annotations

import numpy as np

# AVCOL_SPC numbering (FFmpeg): 1 BT.709, 2 unspecified, 4 FCC, 5 BT.470BG,
# 6 SMPTE 170M, 7 SMPTE 240M, 9 BT.2020 NCL, 10 BT.2020 CL.
_KR_KB = {
    1: (0.2126, 0.0722),
    4: (0.30, 0.11),
    5: (0.299, 0.114),
    6: (0.299, 0.114),
    7: (0.212, 0.087),
    9: (0.2627, 0.0593),
    10: (0.2627, 0.0593),
}
UNSPECIFIED = 2
RANGE_LIMITED = 1  # AVCOL_RANGE_MPEG
RANGE_FULL = 2  # AVCOL_RANGE_JPEG


def supported_matrix(matrix: int) -> bool:
    return matrix in _KR_KB


def resolve_matrix(tagged: int | None, height: int) -> tuple[int, bool]:
    """Matrix to use for a source, and whether it was assumed.

    Untagged (0, 2 or unknown) sources get BT.709 above 576 lines and BT.601
    (SMPTE 170M) otherwise, the rule of reference/MEDIA_IO.md section 2.3.
    """
    if tagged in _KR_KB:
        return int(tagged), False
    return (1 if height > 576 else 6), True


def resolve_range(tagged: int | None) -> int:
    """Unspecified range on a Y'CbCr format is limited (studio) range."""
    return RANGE_FULL if tagged == RANGE_FULL else RANGE_LIMITED


def _scales(bits: int, rng: int) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale) in code values."""
    m = float(1 << (bits - 8))
    if rng == RANGE_FULL:
        full = float((1 << bits) - 1)
        return 0.0, full, float(1 << (bits - 1)), full
    return 16.0 * m, 219.0 * m, 128.0 * m, 224.0 * m


def rgb_to_ycbcr(rgb: np.ndarray, *, matrix: int = 1, range: int = RANGE_LIMITED,
                 bits: int = 10, subsampling: str = "422") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode R'G'B' to quantised Y', Cb, Cr planes.

    Args:
        rgb: (H, W, 3) float, values clipped to [0, 1].
        matrix: AVCOL_SPC code (1 = BT.709).
        range: 1 limited, 2 full.
        bits: 8, 10 or 12.
        subsampling: "444" (chroma (H, W)), "422" (H, ceil(W/2)) or "420"
            (ceil(H/2), ceil(W/2)).
    Returns:
        (y, cb, cr) uint16 planes.

    >>> y, cb, cr = rgb_to_ycbcr(np.ones((2, 2, 3), np.float32))
    >>> int(y[0, 0]), int(cb[0, 0])
    (940, 512)
    """
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    x = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    yv = kr * r + kg * g + kb * b
    pb = (b - yv) / (2.0 * (1.0 - kb))
    pr = (r - yv) / (2.0 * (1.0 - kr))
    if subsampling in ("422", "420"):
        pb, pr = _box(pb, subsampling), _box(pr, subsampling)
    elif subsampling != "444":
        raise ValueError(f"subsampling must be 444, 422 or 420, not {subsampling!r}")
    yo, ys, co, cs = _scales(bits, range)
    hi = (1 << bits) - 1
    y = np.clip(np.rint(yo + ys * yv), 0, hi).astype(np.uint16)
    cb = np.clip(np.rint(co + cs * pb), 0, hi).astype(np.uint16)
    cr = np.clip(np.rint(co + cs * pr), 0, hi).astype(np.uint16)
    return y, cb, cr


#: Rows decoded per step by :func:`ycbcr_to_rgb` (even: a 4:2:0 chroma row pair
#: never straddles two bands). Bands keep the float temporaries in cache and
#: out of the process's peak memory (issue 11: 0.11 -> 0.03 CPU-s and ~100 MB
#: less per 1080p frame than whole-frame planes, measured).
DECODE_BAND_ROWS = 32


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, *, matrix: int = 1,
                 range: int = RANGE_LIMITED, bits: int = 10, out: np.ndarray | None = None) -> np.ndarray:
    """Decode Y', Cb, Cr code-value planes to (H, W, 3) float32 R'G'B'.

    Chroma planes smaller than luma are upsampled by repetition. Values are
    not clipped (super-whites stay above 1.0, as a grading app shows them).
    ``out``: an (H, W, 3) float32 C-contiguous array to write into.

    Band by band; every pixel gets exactly the float32 operations of the
    whole-frame formula (the result is bit-identical to it): the chroma terms
    are scaled before they are repeated, which changes no value.

    >>> rgb = ycbcr_to_rgb(np.full((2, 2), 940), np.full((2, 1), 512), np.full((2, 1), 512))
    >>> float(rgb[0, 0, 0])
    1.0
    """
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    h, w = y.shape
    yo, ys, co, cs = _scales(bits, range)
    ry, rx = -(-h // cb.shape[0]), -(-w // cb.shape[1])
    if out is None or out.shape != (h, w, 3) or out.dtype != np.float32 or not out.flags.c_contiguous:
        out = np.empty((h, w, 3), np.float32)
    f32 = np.float32
    band = DECODE_BAND_ROWS * ry
    for y0 in _range(0, h, band):
        y1 = min(h, y0 + band)
        c0, c1 = y0 // ry, -(-y1 // ry)
        yv = np.subtract(y[y0:y1], yo, dtype=f32)
        yv /= f32(ys)
        pb = np.subtract(cb[c0:c1], co, dtype=f32)
        pb /= f32(cs)
        pr = np.subtract(cr[c0:c1], co, dtype=f32)
        pr /= f32(cs)
        pr *= f32(2.0 * (1.0 - kr))
        pb *= f32(2.0 * (1.0 - kb))
        r = yv + _upsample(_repeat(pr, ry, rx), y1 - y0, w)
        b = yv + _upsample(_repeat(pb, ry, rx), y1 - y0, w)
        g = yv - f32(kr) * r
        g -= f32(kb) * b
        g /= f32(kg)
        dst = out[y0:y1]
        dst[..., 0] = r
        dst[..., 1] = g
        dst[..., 2] = b
    return out


_range = range  # ``range`` is a keyword argument of the conversions


def _repeat(p: np.ndarray, ry: int, rx: int) -> np.ndarray:
    if ry > 1:
        p = np.repeat(p, ry, axis=0)
    if rx > 1:
        p = np.repeat(p, rx, axis=1)
    return p


def _box(p: np.ndarray, subsampling: str) -> np.ndarray:
    if p.shape[1] % 2:
        p = np.concatenate([p, p[:, -1:]], axis=1)
    p = 0.5 * (p[:, 0::2] + p[:, 1::2])
    if subsampling == "420":
        if p.shape[0] % 2:
            p = np.concatenate([p, p[-1:]], axis=0)
        p = 0.5 * (p[0::2] + p[1::2])
    return p


def _upsample(p: np.ndarray, h: int, w: int) -> np.ndarray:
    ry = -(-h // p.shape[0])
    rx = -(-w // p.shape[1])
    if ry > 1:
        p = np.repeat(p, ry, axis=0)
    if rx > 1:
        p = np.repeat(p, rx, axis=1)
    return p[:h, :w]


# Chromaticities (x, y of R, G, B, white) per AVCOL_PRI code, for EXR headers.
CHROMATICITIES = {
    1: (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),  # BT.709 / sRGB
    5: (0.64, 0.33, 0.29, 0.60, 0.15, 0.06, 0.3127, 0.3290),  # BT.470BG (PAL)
    6: (0.630, 0.340, 0.310, 0.595, 0.155, 0.070, 0.3127, 0.3290),  # SMPTE 170M
    9: (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),  # BT.2020
    12: (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),  # Display P3
}
