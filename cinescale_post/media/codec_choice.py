"""Which codec writes an output path (issue 11 item 8).

The preset's codec wins wherever it can write the suffix of ``-o``. Where it
cannot (``-o still.png`` with an EXR preset, ``-o out.mov`` with an EXR
sequence preset), the suffix names the codec instead of the render failing:

=================  =========================================================
suffix             codec
=================  =========================================================
``.png``           png16
``.tif .tiff``     tiff16
``.exr``           exr
``.mov``           the preset's codec when it is a MOV codec, else prores_hq
``.mp4``           h264_10
``.mxf``           dnxhr_hqx (the only MXF codec we write)
=================  =========================================================

A codec given explicitly (``--set output.codec=...``) is never replaced: a
mismatch then stays the plan's error, as the user asked for that codec.
The preset's ``output.options`` were written for its own codec, so they are
dropped when the codec changes (``--set output.options.*`` are kept); the
plan says so once in its warnings (log and manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from cinescale_post.media.movie_codecs import MOVIE_CODECS
from cinescale_post.media.sequence import parse_pattern

SUFFIX_CODECS: dict[str, str] = {
    ".png": "png16",
    ".tif": "tiff16",
    ".tiff": "tiff16",
    ".exr": "exr",
    ".mov": "prores_hq",
    ".mp4": "h264_10",
    ".mxf": "dnxhr_hqx",
}


def output_suffix(output: str) -> str:
    """The file suffix of a movie path, a still or a frame pattern, lower case."""
    pat = parse_pattern(output)
    return (pat.suffix if pat is not None else Path(output).suffix).lower()


def codec_suffixes(writer, codec: str) -> tuple[str, ...]:
    """Suffixes ``codec`` itself can write: the movie writer's list is the
    union over its codecs (ProRes cannot go into .mp4), so ask the codec table."""
    if writer.name == "movie" and codec in MOVIE_CODECS:
        return MOVIE_CODECS[codec].suffixes
    return tuple(writer.suffixes)


def fit_codec(output: str, codec: str, options: Mapping[str, Any], host, *,
              explicit_keys: Iterable[str] = ()) -> tuple[str, dict[str, Any], str | None]:
    """``(codec, options, note)`` for writing ``output``.

    ``explicit_keys``: the ``--set`` keys (``output.codec`` there disables the
    guess; ``output.options.X`` there survive a codec change). ``note`` is
    ``None`` when the preset's codec is kept.
    """
    keys = set(explicit_keys)
    suffix = output_suffix(output)
    new = SUFFIX_CODECS.get(suffix)
    if new is None or "output.codec" in keys or new == codec:
        return codec, dict(options), None
    if suffix in codec_suffixes(host.writer(codec), codec):
        return codec, dict(options), None
    host.writer(new)  # registered (built in); UnknownNameError names the codecs otherwise
    kept = {k: v for k, v in options.items() if f"output.options.{k}" in keys}
    dropped = sorted(set(options) - set(kept))
    note = (f"output {output}: codec {codec!r} cannot write {suffix} files; writing {new} "
            f"(the codec for {suffix}; --set output.codec=... chooses another)")
    if dropped:
        note += f"; the preset's output.options for {codec} ({', '.join(dropped)}) are not used"
    return new, kept, note


def single_chunk(codec: str, chunk: int) -> tuple[int, str | None]:
    """``(chunk, note)``: long-GOP movie codecs (H.264/H.265) are written as one
    chunk, since chunks are joined by packet copy and a GOP cannot be cut at a
    chunk boundary (``assemble`` refuses several long-GOP chunks)."""
    spec = MOVIE_CODECS.get(codec)
    if spec is None or spec.family != "h26x" or chunk == 0:
        return chunk, None
    return 0, (f"output.chunk = {chunk}: {codec} has inter-frame prediction, so its chunks cannot be joined "
               "by packet copy; the movie is written as one chunk (an interrupted render starts it again; "
               "render ProRes/DNxHR chunks for resumable or farm-split movies)")


__all__ = ["SUFFIX_CODECS", "codec_suffixes", "fit_codec", "output_suffix", "single_chunk"]
