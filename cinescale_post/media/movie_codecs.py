"""The movie codecs we write (ProRes, DNxHR HQX, H.264/H.265 10-bit), how FFmpeg
makes each, and the options a preset may set for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cinescale_post.media.codec_options import bad_option, known_codec, with_defaults

@dataclass(frozen=True)
class MovieCodec:
    """One codec name of ours and how FFmpeg makes it.

    ``pix_fmts``: the pixel formats allowed with this profile (first = default);
    the encoders accept mismatched pairs (``hq`` with 4:4:4 still tags
    ``apch``), which makes non-standard files, so the table is enforced here.
    """

    name: str
    encoder: str
    profile: str | None
    pix_fmts: tuple[str, ...]
    suffixes: tuple[str, ...]
    compressor: str
    family: str  # "prores" | "dnxhr" | "h26x"
    tag: str | None = None


_P422 = ("yuv422p10le",)
_P444 = ("yuv444p10le", "yuva444p10le")  # yuva: with alpha (chosen by the writer when target.alpha)
MOVIE_CODECS: dict[str, MovieCodec] = {
    c.name: c
    for c in (
        MovieCodec("prores_proxy", "prores_ks", "proxy", _P422, (".mov",), "Apple ProRes 422 Proxy", "prores"),
        MovieCodec("prores_lt", "prores_ks", "lt", _P422, (".mov",), "Apple ProRes 422 LT", "prores"),
        MovieCodec("prores_standard", "prores_ks", "standard", _P422, (".mov",), "Apple ProRes 422", "prores"),
        MovieCodec("prores_hq", "prores_ks", "hq", _P422, (".mov",), "Apple ProRes 422 HQ", "prores"),
        MovieCodec("prores_4444", "prores_ks", "4444", _P444, (".mov",), "Apple ProRes 4444", "prores"),
        MovieCodec("prores_4444xq", "prores_ks", "4444xq", _P444, (".mov",), "Apple ProRes 4444 XQ", "prores"),
        MovieCodec("dnxhr_hqx", "dnxhd", "dnxhr_hqx", _P422, (".mov", ".mxf"), "Avid DNxHR HQX", "dnxhr"),
        MovieCodec("h264_10", "libx264", None, ("yuv420p10le", "yuv422p10le"), (".mp4", ".mov"), "H.264 10-bit",
                   "h26x"),
        MovieCodec("h265_10", "libx265", None, ("yuv420p10le", "yuv422p10le"), (".mp4", ".mov"), "HEVC 10-bit",
                   "h26x", tag="hvc1"),
    )
}

CONTAINERS = {".mov": "mov", ".mp4": "mp4", ".mxf": "mxf"}
CHROMA = {"yuv420p10le": "420", "yuv422p10le": "422", "yuv444p10le": "444", "yuva444p10le": "444"}
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Audio codecs each container takes by packet copy (MXF OP1a: PCM only).


def _common_defaults() -> dict[str, Any]:
    # threads 0 = FFmpeg's automatic choice; fragment_seconds bounds what a
    # crash can lose (one fragment is buffered in memory before it is written).
    return {"threads": 0, "timecode": "auto", "fragment_seconds": 1.0}


def movie_option_defaults(codec: str) -> dict[str, Any]:
    """Default options of a movie codec (what ``validate_options`` fills in)."""
    spec = MOVIE_CODECS[codec]
    d = {"pix_fmt": spec.pix_fmts[0], **_common_defaults()}
    if spec.family == "h26x":
        d.update(chroma=CHROMA[spec.pix_fmts[0]], crf=16 if spec.encoder == "libx264" else 18, preset="medium")
    return d


def validate_movie_options(codec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise movie options (defaults filled) or raise :class:`PlanError`.

    Keys: ``pix_fmt``; ``threads`` (int >= 0, 0 = auto); ``timecode``
    ("auto" = the source's, "none", or ``HH:MM:SS:FF`` for the source's first
    frame, ``;`` for drop-frame); ``fragment_seconds`` (> 0); and for
    ``h264_10``/``h265_10`` also ``chroma`` (420|422), ``crf`` (0-51) and
    ``preset``. A ``pix_fmt`` that does not match the profile or the chroma
    is refused rather than written as a non-standard file.
    """
    known_codec(codec, MOVIE_CODECS, "movie")
    spec = MOVIE_CODECS[codec]
    out = with_defaults(codec, movie_option_defaults(codec), options)
    if spec.family == "h26x":
        chroma = str(out["chroma"])
        if chroma not in ("420", "422"):
            raise bad_option(codec, "chroma", out["chroma"], "one of 420, 422")
        out["chroma"] = chroma
        if "pix_fmt" not in options:
            out["pix_fmt"] = f"yuv{chroma}p10le"
        elif CHROMA.get(out["pix_fmt"]) != chroma:
            raise bad_option(codec, "pix_fmt", out["pix_fmt"], f"yuv{chroma}p10le with chroma={chroma}")
        crf = out["crf"]
        if isinstance(crf, bool) or not isinstance(crf, (int, float)) or not 0 <= crf <= 51:
            raise bad_option(codec, "crf", crf, "a number from 0 to 51")
        if out["preset"] not in _PRESETS:
            raise bad_option(codec, "preset", out["preset"], f"one of {', '.join(_PRESETS)}")
    if out["pix_fmt"] not in spec.pix_fmts:
        raise bad_option(codec, "pix_fmt", out["pix_fmt"], f"one of {', '.join(spec.pix_fmts)}")
    threads = out["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise bad_option(codec, "threads", threads, "an integer >= 0 (0 = automatic)")
    fs = out["fragment_seconds"]
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not fs > 0:
        raise bad_option(codec, "fragment_seconds", fs, "a number of seconds > 0")
    out["fragment_seconds"] = float(fs)
    out["timecode"] = validate_timecode_option(codec, out["timecode"])
    return out


def validate_timecode_option(codec: str, value: Any) -> str:
    """``auto`` | ``none`` | ``HH:MM:SS:FF`` (``;`` before FF: drop-frame)."""
    import re

    if value in ("auto", "none"):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d\d:\d\d:\d\d[:;.]\d\d", value):
        return value
    raise bad_option(codec, "timecode", value, "auto, none, or HH:MM:SS:FF (HH:MM:SS;FF for drop-frame)")
