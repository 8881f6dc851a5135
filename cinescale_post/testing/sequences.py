"""Tiny image sequences (EXR, DPX, PNG, TIFF) with known pixels."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from cinescale_post.testing.clips import fill_plane
from cinescale_post.testing.pixels import sequence_rgb

def make_sequence(
    pattern: str | os.PathLike,
    numbers: Iterable[int],
    *,
    size: tuple[int, int] = (64, 48),
    kind: str | None = None,
    half: bool = True,
    bits: int = 16,
    skip: Iterable[int] = (),
    rate: Fraction | None = None,
    timecode: str | None = None,
) -> list[Path]:
    """Write one image per frame number to a pattern such as ``dir/sh010_v001.####.exr``.

    Args:
        pattern: any spelling ``media.sequence.parse_pattern`` accepts.
        numbers: frame numbers to write; ``skip`` leaves some out (gaps).
        kind: "exr", "png", "tiff" or "dpx"; default from the suffix.
        half: EXR pixel type (float16 if True, else float32).
        bits: PNG/TIFF sample depth, 8 or 16 (DPX is always 10-bit).
        rate, timecode: EXR ``framesPerSecond`` / ``timeCode`` attributes
            (timecode of the first written frame, ``"HH:MM:SS:FF"``).
    Returns:
        The written paths. Pixels: :func:`sequence_rgb`, quantised to the
        file's type (half; ``rint(v * 65535) / 65535`` for 16-bit PNG/TIFF;
        ``rint(v * 1023) / 1023`` for DPX).
    """
    from cinescale_post.media.sequence import parse_pattern

    seq = parse_pattern(str(pattern))
    if seq is None:
        raise ValueError(f"{pattern} has no frame token (####, %04d, @@@@, $F4)")
    kind = kind or {".tif": "tiff"}.get(seq.suffix, seq.suffix.lstrip("."))
    os.makedirs(seq.directory or ".", exist_ok=True)
    skip = set(skip)
    written = []
    for k, number in enumerate(n for n in numbers if n not in skip):
        target = Path(seq.path(number))
        rgb = sequence_rgb(number, size, kind)
        if kind == "exr":
            _write_exr(target, rgb, half=half, rate=rate, timecode=timecode, offset=k)
        elif kind in ("png", "tiff"):
            import cv2

            scale = 65535 if bits == 16 else 255
            codes = np.rint(np.clip(rgb, 0, 1) * scale).astype(np.uint16 if bits == 16 else np.uint8)
            if not cv2.imwrite(str(target), np.ascontiguousarray(codes[..., ::-1])):
                raise OSError(f"OpenCV could not write {target}")
        elif kind == "dpx":
            _write_dpx(target, rgb)
        else:
            raise ValueError(f"kind must be exr, png, tiff or dpx, not {kind!r}")
        written.append(target)
    return written


def _write_exr(target: Path, rgb: np.ndarray, *, half: bool, rate, timecode, offset: int) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    if rate is not None:
        header["framesPerSecond"] = Fraction(rate)
    if timecode is not None:
        hh, mm, ss, ff = (int(p) for p in timecode.replace(";", ":").split(":"))
        fps = round(Fraction(rate or 24))
        total = ((hh * 60 + mm) * 60 + ss) * fps + ff + offset  # non-drop arithmetic
        tc = OpenEXR.TimeCode()
        tc.hours, rem = divmod(total, 3600 * fps)
        tc.minutes, rem = divmod(rem, 60 * fps)
        tc.seconds, tc.frame = divmod(rem, fps)
        header["timeCode"] = tc
    pixels = rgb.astype(np.float16 if half else np.float32)
    with OpenEXR.File(header, {"RGB": pixels}) as f:
        f.write(str(target))


def _write_dpx(target: Path, rgb: np.ndarray) -> None:
    """10-bit DPX through PyAV's encoder (one packet is one complete file).

    Codes are ``rint(rgb * 1023)``, filled into the planes directly: swscale's
    float -> 10-bit path is up to ~2 codes off.
    """
    import av

    h, w = rgb.shape[:2]
    codes = np.rint(np.clip(rgb, 0, 1) * 1023).astype(np.uint16)
    frame = av.VideoFrame(w, h, "gbrp10le")
    for plane, channel in zip(frame.planes, (1, 2, 0)):  # plane order G, B, R
        fill_plane(plane, codes[..., channel])
    ctx = av.CodecContext.create("dpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "gbrp10le"
    ctx.time_base = Fraction(1, 24)
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    target.write_bytes(data)
