"""Open or describe any input: the one entry point for ``cinescale probe`` and plans.

``open_input`` checks what no reader can check for itself (the path exists,
is not a directory, a pattern matches files), asks the plugin host for the
reader that accepts the path, and turns failures into :class:`InputError`
(exit code 3) naming the file and the fix. ``probe`` returns the
:class:`SourceInfo`; ``probe_dict`` / ``format_probe`` render it for
``--json`` and for people.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

from cinescale_post.contracts.errors import CinescaleError, InputError, PluginError
from cinescale_post.contracts.media import Reader, ReadPolicy, SourceInfo, fraction_str
from cinescale_post.media.sequence import IMAGE_SUFFIXES, compress_ranges, parse_pattern

_PATTERN_FIX = "pass a movie file or a frame pattern such as shot.####.exr (#### = 4 digits, also %04d, $F4)"

# A frame number in a file name: digits after a dot or underscore, before the
# suffix (so "comp_v001.exr" is not a sequence of versions).
_FRAME_IN_NAME = re.compile(r"^(.*[._])(-?\d+)(\.[A-Za-z0-9]+)$")


def sequence_hints(directory: str, limit: int = 4) -> list[str]:
    """Image sequences found in ``directory``, as patterns with their ranges.

    >>> sequence_hints("/plates/sh010")   # doctest: +SKIP
    ['/plates/sh010/sh010_v001.####.exr (1001-1012)']
    """
    try:
        names = sorted(os.listdir(directory or "."))
    except OSError:
        return []
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        m = _FRAME_IN_NAME.match(name)
        if m and m.group(3).lower() in IMAGE_SUFFIXES:
            groups.setdefault((m.group(1), m.group(3)), []).append(m.group(2))
    hints = []
    for (head, tail), digits in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        pad = min(len(d.lstrip("-")) for d in digits)
        numbers = sorted(int(d) for d in digits)
        hints.append(f"{os.path.join(directory, head + '#' * pad + tail)} ({compress_ranges(numbers)})")
    return hints[:limit]


def _hint_fix(directory: str) -> str:
    hints = sequence_hints(directory)
    if hints:
        return "sequences in that folder: " + "; ".join(hints)
    return _PATTERN_FIX


def _check_path(path: str) -> None:
    """Raise InputError for a path no reader should be asked about."""
    pattern = parse_pattern(path)
    if pattern is not None:
        directory = pattern.directory or "."
        if not os.path.isdir(directory):
            raise InputError(f"folder {directory} of the pattern {path} does not exist", fix="check the path")
        if not pattern.scan():
            raise InputError(f"no files match the pattern {path} ({pattern.pad}-digit frame numbers)",
                             fix=_hint_fix(directory))
        return
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not a movie or an image sequence", fix=_hint_fix(path))
    if not os.path.exists(path):
        parent = os.path.dirname(path) or "."
        hints = sequence_hints(parent) if os.path.isdir(parent) else []
        fix = "check the path" + ("; sequences next to it: " + "; ".join(hints) if hints else "")
        raise InputError(f"input {path} does not exist", fix=fix)
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} cannot be read (permission denied)", fix="check the file's permissions")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path} is empty (0 bytes)", fix="re-export it or copy it again")


def open_input(path: str | os.PathLike, *, first_frame: int = 1001, host, policy: ReadPolicy | None = None,
               planned: SourceInfo | None = None) -> Reader:
    """Open ``path`` (movie, pattern or single image) with the reader the host picks.

    Args:
        path: a movie file, a frame pattern (``shot.####.exr``) or an image.
        first_frame: plate number of a movie's first frame (sequences use the
            numbers in their file names).
        host: the :class:`cinescale_post.pipeline.host.Host` whose readers are asked.
        policy: what to do with bad (movies) or missing (sequences) frames.
        planned: the SourceInfo the plan probed (render tasks): readers that
            support it (``ReaderFactory.open_planned``) reuse its frame
            table instead of reading the file's index again.
    Returns:
        An open :class:`Reader` (a context manager) with ``info`` filled.
    Raises:
        InputError: missing, a folder, not media, truncated, zero frames.
        PluginError: a third-party reader failed in an unexpected way.
    """
    path = os.fspath(path)
    _check_path(path)
    factory = host.reader_for(path)
    if factory is None:
        names = ", ".join(sorted(host.readers())) or "none"
        raise InputError(f"no reader accepts {path} (installed readers: {names})", fix=_PATTERN_FIX)
    policy = policy or ReadPolicy()
    try:
        if factory.open_planned is not None:
            reader = factory.open_planned(path, first_frame, policy, planned)
        else:
            reader = factory.open(path, first_frame)
            reader.policy = policy
    except CinescaleError:
        raise
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc}", fix="check the file and its permissions") from exc
    except Exception as exc:  # noqa: BLE001 - a reader plugin's own bug
        raise PluginError(f"reader {factory.name!r} failed on {path}: {type(exc).__name__}: {exc}",
                          fix=f"report it to the plugin's authors; `cinescale plugins` shows who provides {factory.name}") from exc
    if reader.info.frame_count == 0:
        reader.close()
        raise InputError(f"{path} has no frames", fix="export the clip again with picture")
    return reader


def probe(path: str | os.PathLike, *, first_frame: int = 1001, host, policy: ReadPolicy | None = None) -> SourceInfo:
    """What :func:`open_input` learns about ``path``, without keeping it open."""
    with open_input(path, first_frame=first_frame, host=host, policy=policy) as reader:
        return reader.info


# ---------------------------------------------------------------- rendering

_PRIMARIES = {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
              8: "film", 9: "bt2020", 10: "smpte428", 11: "dci-p3", 12: "display-p3", 22: "ebu3213"}
_TRC = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
        8: "linear", 11: "iec61966-2-4", 13: "srgb", 14: "bt2020-10", 15: "bt2020-12", 16: "pq",
        17: "smpte428", 18: "hlg"}
_MATRIX = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
           8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
_RANGE = {0: "unspecified", 1: "limited", 2: "full"}


def colour_names(info: SourceInfo) -> dict:
    c = info.colour
    return {
        "primaries": _PRIMARIES.get(c.primaries, str(c.primaries)),
        "trc": _TRC.get(c.trc, str(c.trc)),
        "matrix": _MATRIX.get(c.matrix, str(c.matrix)),
        "range": _RANGE.get(c.range, str(c.range)),
    }


def duration_seconds(info: SourceInfo) -> float:
    """Movies: pts span plus one frame; sequences: frame span / rate."""
    if not info.frame_numbers:
        return 0.0
    if info.pts:
        span = Fraction(info.pts[-1] - info.pts[0]) * info.time_base
        return float(span + 1 / info.rate)
    return float(Fraction(info.last_frame - info.first_frame + 1) / info.rate)


def probe_dict(info: SourceInfo) -> dict:
    """JSON-ready description for ``cinescale probe --json``.

    ``SourceInfo.to_dict()`` plus ``display_width``/``display_height`` (after
    rotation), ``duration_s``, colour names, ``missing_ranges`` and, per audio
    stream, a ``label``.
    """
    d = info.to_dict()
    d["display_width"], d["display_height"] = info.display_size
    d["duration_s"] = round(duration_seconds(info), 6)
    d["colour"]["names"] = colour_names(info)
    d["missing_ranges"] = compress_ranges(list(info.missing))
    for entry in d["audio"]:
        entry["label"] = f"{entry['codec']} {entry['sample_rate']} Hz {entry['channels']} ch"
    return d


def _size_str(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def format_probe(info: SourceInfo) -> str:
    """A human-readable two-column table of ``info``."""
    names = colour_names(info)
    rows = [
        ("input", info.path),
        ("kind", f"{info.kind} ({info.format})"),
        ("video", f"{info.codec} {info.width}x{info.height} {info.pix_fmt}, {info.bit_depth}-bit"),
    ]
    frames = f"{info.first_frame}-{info.last_frame} ({info.frame_count} frames)"
    if info.missing:
        frames += f", missing {compress_ranges(list(info.missing))}"
    rows.append(("frames", frames))
    rate = f"{float(info.rate):.3f} fps ({fraction_str(info.rate)})"
    if info.kind == "movie":
        rate += f", time base {fraction_str(info.time_base)}"
    if info.vfr:
        rate += ", VARIABLE frame rate"
    rows.append(("rate", rate))
    rows.append(("duration", f"{duration_seconds(info):.3f} s"))
    rows.append(("timecode", info.timecode or "-"))
    colour = f"primaries {names['primaries']}, transfer {names['trc']}, matrix {names['matrix']}, range {names['range']}"
    if info.colour.assumed:
        colour += " (partly assumed: untagged)"
    rows.append(("colour", colour))
    if info.rotation:
        w, h = info.display_size
        rows.append(("rotation", f"{info.rotation} deg (shown as {w}x{h}; pixels decoded as coded)"))
    if info.fields:
        from cinescale_post.media.fields import FieldPlan

        rows.append(("fields", FieldPlan.parse(info.fields).describe()))
    for note in info.notes:
        rows.append(("note", note))
    for a in info.audio:
        rows.append(("audio", f"#{a.index} {a.codec} {a.sample_rate} Hz {a.channels} ch"))
    rows.append(("size", _size_str(info.size_bytes)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
