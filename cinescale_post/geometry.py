"""Where a source frame lands in the output frame: fit, pad, crop, snap."""

from __future__ import annotations

from dataclasses import dataclass

from .interfaces import SourceInfo

# Largest mismatch, in pixels per axis, that is snapped to the exact target
# instead of padded/cropped: an odd source such as 1919x1079 scaled to UHD
# would otherwise get a 1-pixel bar. The aspect change is below 0.1 %.
SNAP_PX = 2


@dataclass(frozen=True)
class Geometry:
    """How a source frame maps into the output frame: resize to
    (scale_w, scale_h), then place at (x, y) in (width, height) — negative
    offsets crop, positive offsets pad (black)."""

    width: int
    height: int
    scale_w: int
    scale_h: int
    x: int
    y: int
    rotate: int = 0  # degrees CCW applied to source pixels first


def fit_geometry(source: SourceInfo, width: int, height: int, fit: str) -> tuple[Geometry, str | None]:
    """Place the (display-oriented) source into width x height."""
    sw, sh = source.display_size
    rotate = source.rotation % 360
    if fit == "stretch":
        return Geometry(width, height, width, height, 0, 0, rotate), None
    s = min(width / sw, height / sh) if fit == "pad" else max(width / sw, height / sh)
    w, h = round(sw * s), round(sh * s)
    note = None
    if abs(w - width) <= SNAP_PX and abs(h - height) <= SNAP_PX:
        if (w, h) != (width, height):
            note = (f"source {sw}x{sh} resampled to exactly {width}x{height} "
                    f"(aspect change {abs(sw / sh - width / height) / (width / height):.3%})")
        w, h = width, height
    elif fit == "pad":
        note = f"source {sw}x{sh} is fitted as {w}x{h} and padded with black to {width}x{height}"
    else:
        note = f"source {sw}x{sh} is scaled to {w}x{h} and cropped to {width}x{height}"
    return Geometry(width, height, w, h, (width - w) // 2, (height - h) // 2, rotate), note
