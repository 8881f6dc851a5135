"""What a movie container says about itself: is it media, which stream is the
picture, its declared length, start timecode and colour tags (MEDIA_IO.md 2.2)."""

from __future__ import annotations

import os
import re
from fractions import Fraction

import av

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import Colour
import cinescale_post.media.colour as col
from cinescale_post.media.frame_rgb import is_ycbcr

FIX_DAMAGED = "the file is damaged or incomplete; re-export it or copy it again"

# Leading bytes of containers we recognise, to tell "truncated" from "not media".
_MAGIC = (
    (4, (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"), "QuickTime/MP4"),
    (0, (b"\x1a\x45\xdf\xa3",), "Matroska/WebM"),
    (0, (b"\x06\x0e\x2b\x34",), "MXF"),
    (0, (b"RIFF",), "AVI"),
)


# FFmpeg "decodes" text files as ANSI art; they are never footage.
TEXT_FORMATS = {"tty"}


def _container_kind(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for offset, magics, name in _MAGIC:
        if any(head[offset:offset + len(m)] == m for m in magics):
            return name
    return None


def open_error(path: str, exc: Exception) -> InputError:
    """The InputError for a file FFmpeg refuses to open: truncated or not media."""
    if os.path.getsize(path) == 0:
        return InputError(f"{path} is empty (0 bytes)", fix=FIX_DAMAGED)
    kind = _container_kind(path)
    if kind is not None:
        return InputError(
            f"{path} looks like a {kind} file but cannot be opened ({exc}): it is truncated or incomplete",
            fix="re-export it or copy it again (a MOV/MP4 written by a crashed render has no index)",
        )
    return InputError(
        f"{path} is not a media file FFmpeg can read ({exc})",
        fix="pass a movie file (MOV, MP4, MKV, MXF...) or an image-sequence pattern such as shot.####.exr",
    )


def pick_video_stream(container, path: str):
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    if not len(container.streams):  # MOV/MP4 drop a video track that has no samples
        raise InputError(f"{path} has no frames (the container holds no streams)",
                         fix="the clip is empty; export it again with picture")
    raise InputError(f"{path} has no video stream",
                     fix="pass a file with picture; audio-only files cannot be upscaled")


def declared_end(stream) -> Fraction | None:
    """End time (seconds) the container declares for a stream without a frame
    count: ``stream.duration``, else Matroska's per-track DURATION tag."""
    if stream.duration:
        return Fraction((stream.start_time or 0) + stream.duration) * stream.time_base
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), None)
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d)(?:\.(\d+))?", tag or "")
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    length = Fraction((int(hh) * 60 + int(mm)) * 60 + int(ss)) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    return Fraction(stream.start_time or 0) * stream.time_base + length


def timecode(container, vstream) -> str | None:
    """Start timecode: video stream metadata, then a data (tmcd) stream, then the
    container (MXF keeps it there) -- the order of MEDIA_IO.md section 2.2."""
    sources = [vstream.metadata]
    sources += [s.metadata for s in container.streams if s.type == "data"]
    sources.append(container.metadata)
    for meta in sources:
        for key, value in meta.items():
            if key.lower() == "timecode" and value:
                return value
    return None


def resolve_colour(frame, ctx, height: int) -> Colour:
    """Colour tags of the clip, filling what is unspecified (``assumed``)."""

    def tag(name):
        value = getattr(frame, name)
        return value if value not in (None, 0, col.UNSPECIFIED) else getattr(ctx, name, value)

    primaries, trc, matrix_tag, range_tag = (tag(n) for n in ("color_primaries", "color_trc", "colorspace", "color_range"))
    assumed = False
    if is_ycbcr(frame.format):
        if matrix_tag in (0, col.UNSPECIFIED) or col.supported_matrix(matrix_tag):
            matrix, assumed = col.resolve_matrix(matrix_tag, height)
        else:
            matrix = matrix_tag
        rng = col.RANGE_FULL if frame.format.name.startswith("yuvj") else col.resolve_range(range_tag)
    else:
        matrix, rng = 0, col.RANGE_FULL  # RGB: no matrix; samples span the full range
    if primaries in (None, 0, col.UNSPECIFIED):  # same rule as the matrix (PAL 576 -> BT.470BG)
        primaries, assumed = (1 if height > 576 else 5 if height == 576 else 6), True
    if trc in (None, 0, col.UNSPECIFIED):
        trc, assumed = (1 if height > 576 else 6), True
    return Colour(primaries=int(primaries), trc=int(trc), matrix=int(matrix), range=int(rng), assumed=assumed)
