"""Pixel truth of the test media: what each frame of a test clip or sequence
holds before encoding, so a reader's decode can be checked code for code."""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import numpy as np

# Index content: a grid of black/white cells, one bit each (4 x 3 = 12 bits).
_INDEX_GRID = (4, 3)

Content = str | Callable[[int, tuple[int, int]], np.ndarray]


def index_rgb(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``index`` burned in as a 4 x 3 grid of black/white cells.

    Cell ``k`` (row-major from the top left) is white when bit ``k`` of
    ``index`` is set. Cells are large and hard-edged, so the value survives
    lossy long-GOP coding. Returns (H, W, 3) float32 in [0, 1].
    """
    w, h = size
    cols, rows = _INDEX_GRID
    if index >= 1 << (cols * rows):
        raise ValueError(f"index {index} does not fit in {cols * rows} bits")
    out = np.zeros((h, w, 3), np.float32)
    for k in range(cols * rows):
        if index >> k & 1:
            r, c = divmod(k, cols)
            out[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = 1.0
    return out


def read_index(rgb: np.ndarray) -> int:
    """Inverse of :func:`index_rgb`: the frame index a decoded (H, W, 3) frame shows.

    Reads the middle half of each cell, so chroma bleed and ringing at the
    cell edges do not matter.
    """
    h, w = rgb.shape[:2]
    cols, rows = _INDEX_GRID
    luma = rgb.mean(axis=-1)
    value = 0
    for k in range(cols * rows):
        r, c = divmod(k, cols)
        y0, y1 = r * h // rows, (r + 1) * h // rows
        x0, x1 = c * w // cols, (c + 1) * w // cols
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if luma[y0 + dy:y1 - dy, x0 + dx:x1 - dx].mean() > 0.5:
            value |= 1 << k
    return value


def clip_rgb(content: Content, index: int, size: tuple[int, int]) -> np.ndarray:
    """The R'G'B' truth of frame ``index`` of a clip: (H, W, 3) float32 in [0, 1].

    ``content``: "gradient" (a horizontal red ramp that moves one step per
    frame, a vertical green ramp, blue constant), "index" (see
    :func:`index_rgb`) or a callable ``(index, (w, h)) -> (H, W, 3)``.
    """
    w, h = size
    if callable(content):
        rgb = np.asarray(content(index, size), np.float32)
        if rgb.shape != (h, w, 3):
            raise ValueError(f"content returned shape {rgb.shape}, expected {(h, w, 3)}")
        return rgb
    if content == "index":
        return index_rgb(index, size)
    if content == "gradient":
        x = (np.arange(w, dtype=np.float32) + index) % w / max(w - 1, 1)
        y = np.arange(h, dtype=np.float32) / max(h - 1, 1)
        rgb = np.empty((h, w, 3), np.float32)
        rgb[..., 0] = x[None, :]
        rgb[..., 1] = y[:, None]
        rgb[..., 2] = 0.25
        return rgb
    raise ValueError(f"content must be 'gradient', 'index' or a callable, not {content!r}")


def vfr_pts(frames: int, rate: Fraction) -> tuple[list[int], Fraction]:
    """Variable-rate timestamps used by ``make_clip(vfr=True)``.

    Returns ``(pts, time_base)``: the time base is ``1/(4 * rate.numerator)``
    (so the nominal step is ``4 * rate.denominator`` ticks) and frame
    durations cycle through 0.5, 0.75, 1 and 1.5 nominal steps.
    """
    rate = Fraction(rate)
    tb = Fraction(1, 4 * rate.numerator)
    steps = [2 * rate.denominator, 3 * rate.denominator, 4 * rate.denominator, 6 * rate.denominator]
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += steps[i % len(steps)]
    return pts, tb


def sequence_rgb(number: int, size: tuple[int, int], kind: str = "exr") -> np.ndarray:
    """The value written for frame ``number`` by :func:`make_sequence`, before
    quantisation: (H, W, 3) float32.

    EXR frames are scene-linear-like (from -0.25 to 3.0, so readers must not
    clip); PNG/TIFF/DPX frames are in [0, 1]. Every frame differs.
    """
    w, h = size
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    phase = (number % 97) / 97.0
    rgb = np.empty((h, w, 3), np.float32)
    rgb[..., 0] = x
    rgb[..., 1] = y
    rgb[..., 2] = (x * y + phase) % 1.0
    if kind == "exr":
        rgb = rgb * 3.25 - 0.25
    return rgb
