"""OpenEXR sequences through the official ``OpenEXR`` 3.x bindings.

Never through OpenCV: its wheels either lack EXR or bundle OpenEXR 2.3, which
writes unreadable DWAA/DWAB files without raising (reference/MEDIA_IO.md 4.3).

Each frame is one scanline EXR with channels R, G, B (and A, premultiplied as
the OpenEXR convention defines, when ``target.alpha`` is set) and a
header a compositor can use (Nuke shows it as ``exr/<name>``):

========================  =====================================================
``chromaticities``        ``target.chromaticities`` (OCIO mode), else the primaries
                          of ``target.colour`` (omitted if unknown)
``colorspace``            OCIO name of the pixels' space (OCIO mode only)
``timeCode``              source timecode + the frame's offset (drop-frame kept)
``framesPerSecond``       source rate as a rational (``Fraction(24000, 1001)``)
``owner`` / ``software``  ``cinescale-post <version>``
``frame``                 plate frame number (int)
``sourceFile``            source path
``sourceFrame``           movie: 0-based frame index; sequence: its file number
``sourceTimecode``        the source's own start timecode (string)
``pixelAspectRatio``      the output's pixel aspect (1.0 unless a squeeze is kept)
``target.metadata``       every entry, as a string (``cinescale:plan`` ...)
========================  =====================================================
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.media.codec_options import with_defaults
from cinescale_post.contracts.media import Frame, OutputTarget
from cinescale_post.media.colour import CHROMATICITIES
from cinescale_post.media.image_writer import SequenceFileWriter

COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
PIXELS = ("half", "float")
_HALF_MAX = 65504.0


def exr_option_defaults() -> dict[str, Any]:
    # PIZ: lossless and the fastest lossless writer for grainy plates (MEDIA_IO 4.2).
    return {"pixel": "half", "compression": "piz", "dwa_level": 45.0, "timecode": "auto"}


def validate_exr_options(codec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``pixel`` half|float, ``compression`` (see :data:`COMPRESSIONS`),
    ``dwa_level`` (> 0, DWA quality; lower is better), ``timecode``
    (auto|none|HH:MM:SS:FF). Returns the options with defaults filled."""
    from cinescale_post.media.movie_codecs import validate_timecode_option

    out = with_defaults(codec, exr_option_defaults(), options)
    if out["pixel"] not in PIXELS:
        raise PlanError(f"codec {codec!r}: option pixel={out['pixel']!r} is not allowed",
                        fix=f"pixel must be one of {', '.join(PIXELS)}")
    comp = str(out["compression"]).lower()
    if comp not in COMPRESSIONS:
        raise PlanError(f"codec {codec!r}: option compression={out['compression']!r} is not allowed",
                        fix=f"compression must be one of {', '.join(COMPRESSIONS)} (HTJ2K/ZSTD are left out: "
                        "older readers cannot open them)")
    out["compression"] = comp
    lvl = out["dwa_level"]
    if isinstance(lvl, bool) or not isinstance(lvl, (int, float)) or not lvl > 0:
        raise PlanError(f"codec {codec!r}: option dwa_level={lvl!r} is not allowed",
                        fix="dwa_level must be a number > 0 (45 is the usual default)")
    out["dwa_level"] = float(lvl)
    out["timecode"] = validate_timecode_option(codec, out["timecode"])
    return out


def exr_timecode(tc: str):
    """``"01:02:03:04"`` / ``"00:01:00;02"`` -> ``OpenEXR.TimeCode``."""
    import OpenEXR

    hh, mm, ss, ff = (int(tc[i:i + 2]) for i in (0, 3, 6, 9))
    t = OpenEXR.TimeCode()
    t.hours, t.minutes, t.seconds, t.frame = hh, mm, ss, ff
    t.dropFrame = tc[8] in ";."
    return t


class ExrWriter(SequenceFileWriter):
    """One EXR per frame at ``target.path`` (``shot.%04d.exr``)."""

    def __init__(self, target: OutputTarget):
        super().__init__(target)
        import OpenEXR

        from cinescale_post import __version__

        self.opts = opts = validate_exr_options(target.codec, target.options)
        src = target.source
        hdr: dict[str, Any] = {
            "type": OpenEXR.scanlineimage,
            "compression": getattr(OpenEXR, f"{opts['compression'].upper()}_COMPRESSION"
                                   if opts["compression"] != "none" else "NO_COMPRESSION"),
            "owner": f"cinescale-post {__version__}",
            "software": f"cinescale-post {__version__}",
            "sourceFile": src.path,
        }
        if opts["compression"] in ("dwaa", "dwab"):
            hdr["dwaCompressionLevel"] = opts["dwa_level"]
        chroma = target.chromaticities or CHROMATICITIES.get(target.colour.primaries)
        if chroma:
            hdr["chromaticities"] = tuple(float(v) for v in chroma)
        if target.colorspace:  # OCIO mode: the space the pixels are in (MEDIA_IO 4.1)
            hdr["colorspace"] = target.colorspace
        if src.rate:
            hdr["framesPerSecond"] = Fraction(src.rate)  # a Fraction becomes an EXR rational
        if src.timecode:
            hdr["sourceTimecode"] = src.timecode
        for key, value in target.metadata.items():
            hdr[str(key)] = str(value)
        # Non-square pixels (anamorphic kept): width/height of one pixel, EXR's own attribute.
        hdr["pixelAspectRatio"] = float(target.pixel_aspect or 1)
        self._alpha = target.alpha == "premultiplied"  # EXR alpha is premultiplied by definition
        self._header = hdr
        self._dtype = np.float16 if opts["pixel"] == "half" else np.float32

    def _write_file(self, path: str, frame: Frame) -> None:
        import OpenEXR

        from cinescale_post.media.timecode import source_offset, start_timecode

        src = self.target.source
        hdr = dict(self._header)
        hdr["frame"] = int(frame.number)
        hdr["sourceFrame"] = int(frame.index if src.kind == "movie" else frame.number)
        tc = start_timecode(src, self.opts["timecode"], source_offset(frame, src))
        if tc:
            hdr["timeCode"] = exr_timecode(tc)
        rgb = np.asarray(frame.rgb)
        if self._dtype is np.float16:
            # Values past half's range would become inf; clamp to the largest half.
            rgb = np.clip(rgb, -_HALF_MAX, _HALF_MAX)
        if self._alpha and frame.alpha is not None:
            rgb = np.concatenate([rgb, np.asarray(frame.alpha, np.float32)[..., None]], axis=-1)
            channels = {"RGBA": np.ascontiguousarray(rgb, dtype=self._dtype)}
        else:
            channels = {"RGB": np.ascontiguousarray(rgb, dtype=self._dtype)}
        with OpenEXR.File(hdr, channels) as f:
            f.write(path)
