"""A resampled picture (or alpha) put into the output frame, padded or cropped by
the plan's geometry (``pipeline.geometry.Geometry``: ``scale_w``/``scale_h`` the
resampled size, ``x``/``y`` its offset in the ``width`` x ``height`` frame)."""

from __future__ import annotations

import numpy as np


def place(image: np.ndarray, geometry) -> np.ndarray:
    """``image``: (scale_h, scale_w[, C]) float32 -> (height, width[, C]); padding
    is 0 (black picture, transparent alpha), cropping cuts the same pixels
    from the picture and its alpha."""
    g = geometry
    if (g.scale_w, g.scale_h, g.x, g.y) == (g.width, g.height, 0, 0):
        return image
    canvas = np.zeros((g.height, g.width, *image.shape[2:]), dtype=np.float32)
    sx0, sy0 = max(0, -g.x), max(0, -g.y)
    dx0, dy0 = max(0, g.x), max(0, g.y)
    w = min(g.scale_w - sx0, g.width - dx0)
    h = min(g.scale_h - sy0, g.height - dy0)
    canvas[dy0:dy0 + h, dx0:dx0 + w] = image[sy0:sy0 + h, sx0:sx0 + w]
    return canvas


__all__ = ["place"]
