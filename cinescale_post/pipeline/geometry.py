"""Where a source frame lands in the output frame: fit, pad, crop, snap."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cinescale_post.contracts.media import SourceInfo

# Largest mismatch, in pixels per axis, that is snapped to the exact target
# instead of padded/cropped: an odd source such as 1919x1079 scaled to UHD
# would otherwise get a 1-pixel bar. The aspect change is below 0.1 %.
SNAP_PX = 2


SQUEEZES = ("desqueeze", "keep")


@dataclass(frozen=True)
class Geometry:
    """How a source frame maps into the output frame: resize to
    (scale_w, scale_h), then place at (x, y) in (width, height) — negative
    offsets crop, positive offsets pad (black, and transparent when the output
    has alpha). ``pixel_aspect`` is the output's own pixel aspect (1 unless
    the squeeze is kept); the resize is not uniform when it differs from the
    source's, which is how anamorphic and PAL/NTSC pixels are desqueezed."""

    width: int
    height: int
    scale_w: int
    scale_h: int
    x: int
    y: int
    rotate: int = 0  # degrees CCW applied to source pixels first
    pixel_aspect: Fraction = Fraction(1)


def _par_str(par: Fraction) -> str:
    return f"{par.numerator}:{par.denominator}"


def fit_geometry(source: SourceInfo, width: int, height: int, fit: str,
                 squeeze: str = "desqueeze") -> tuple[Geometry, str | None]:
    """Place the (display-oriented) source into width x height, in display space.

    The fit compares *display* aspects: a PAL 720x576 frame with 16:15 pixels
    is 4:3, a 2x anamorphic 2048x858 plate is 4.77:1. ``squeeze``:
    ``desqueeze`` (default) makes square output pixels; ``keep`` gives the
    output the source's pixel aspect (anamorphic finishing), so the resize is
    uniform and the output declares the squeeze.
    """
    if squeeze not in SQUEEZES:
        raise ValueError(f"squeeze must be one of {SQUEEZES}, not {squeeze!r}")
    sw, sh = source.display_size
    rotate = source.rotation % 360
    src_par = Fraction(getattr(source, "pixel_aspect", 1) or 1)
    if rotate % 180:  # a rotated pixel's aspect is the reciprocal
        src_par = 1 / src_par
    out_par = src_par if squeeze == "keep" else Fraction(1)
    if fit == "stretch":
        return Geometry(width, height, width, height, 0, 0, rotate, out_par), None
    # Source and output extents in display units (square pixels).
    disp_w, disp_h = sw * src_par, Fraction(sh)
    s = min(width * out_par / disp_w, height / disp_h) if fit == "pad" \
        else max(width * out_par / disp_w, height / disp_h)
    w, h = round(disp_w * s / out_par), round(disp_h * s)
    shown = f"{sw}x{sh}" if src_par == 1 else f"{sw}x{sh} (pixel aspect {_par_str(src_par)}, " \
                                                f"display {float(disp_w / disp_h):.4g}:1)"
    note = None
    if abs(w - width) <= SNAP_PX and abs(h - height) <= SNAP_PX:
        if (w, h) != (width, height):
            aspect = disp_w / disp_h
            target = Fraction(width) * out_par / height
            note = (f"source {shown} resampled to exactly {width}x{height} "
                    f"(aspect change {float(abs(aspect - target) / target):.3%})")
        w, h = width, height
    elif fit == "pad":
        note = f"source {shown} is fitted as {w}x{h} and padded with black to {width}x{height}"
    else:
        note = f"source {shown} is scaled to {w}x{h} and cropped to {width}x{height}"
    if src_par != 1 and squeeze == "desqueeze" and note is None:
        note = f"source pixel aspect {_par_str(src_par)} desqueezed to square pixels"
    return Geometry(width, height, w, h, (width - w) // 2, (height - h) // 2, rotate, out_par), note
