"""Editorial hand-back: an OpenTimelineIO timeline next to each render.

``write_otio(plan, outputs)`` writes ``<output base>.otio`` (``sh010.otio``
next to ``sh010.####.exr``; ``master.mov.otio`` next to ``master.mov``, the
same naming as the manifest so a movie and a sequence in one folder never
share a file). Resolve imports it with ``MediaPool.ImportTimelineFromFile``
(or File > Import > Timeline), Nuke Studio/Hiero and every OTIO adapter read
it, and it conforms against the source edit because times are *source
timecode*:

* one video track; one clip per run of consecutive rendered frames, with a
  ``Gap`` where frames are missing, so the record position of every frame is
  its offset from the start of the source;
* media reference: an ``ImageSequenceReference`` (directory URL, prefix,
  padding, suffix, first file number, rate) for sequences, an
  ``ExternalReference`` to the movie (or to each chunk movie when a movie was
  not assembled) otherwise;
* ``available_range``/``source_range`` start at the timecode the writer put
  in the files (the source's timecode plus the frame's offset, or the
  ``timecode`` output option), at the source rate; without timecode, a
  sequence uses its frame numbers and a movie its frame index, which is what
  the host applications show for such media;
* the timeline's ``global_start_time`` is the first rendered frame's time, so
  the record timecode equals the source timecode.

The frames described are those the output *holds*: the plan's frames plus
every unit the manifest verifies (a resumed render or a farm task that adds
frames to an output describes all of them; the farm's final step
``python -m cinescale_post.editorial --assemble OUTPUT``, :mod:`cinescale_post.editorial`, writes
the complete one once every chunk is in).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cinescale_post.contracts.errors import InputError, OutputError
from cinescale_post.orchestrator.manifest import Manifest, atomic_write_text, output_base

OTIO_SUFFIX = ".otio"


def otio_path(output_path: str) -> Path:
    """Where the timeline of ``output_path`` goes (next to its manifest)."""
    return Path(f"{output_base(output_path)}{OTIO_SUFFIX}")


@dataclass(frozen=True)
class Shot:
    """What the timeline needs to know about one render, from a Plan or from
    a manifest (farm final step, where no Plan object exists)."""

    output_path: str  # movie file or printf pattern (absolute or relative to cwd)
    kind: str  # "movie" | "sequence"
    rate: Fraction
    source_frames: tuple[int, ...]
    source_kind: str  # "movie" | "sequence" | "image"
    source_path: str
    timecode: str | None  # the timecode the writer put on the first source frame, or None
    metadata: dict = field(default_factory=dict)

    def offset(self, frame: int) -> int:
        """Frames between the first source frame and ``frame``: the index for
        movies, the difference of plate numbers for sequences (a gap in the
        source keeps later frames on their own timecode) -- the same rule the
        writers use for ``timeCode``/``tmcd`` (media.movie_writer.source_offset)."""
        if self.source_kind == "movie":
            return self._index[frame]
        return frame - self.source_frames[0]

    @functools.cached_property
    def _index(self) -> dict[int, int]:
        return {n: i for i, n in enumerate(self.source_frames)}


def _written_timecode(source_tc: str | None, option) -> str | None:
    """The base timecode the writers stamp: ``auto`` -> the source's,
    ``none`` -> none, ``HH:MM:SS:FF`` -> that."""
    if option in (None, "auto"):
        return source_tc
    if option == "none":
        return None
    return str(option)


def shot_from_plan(plan) -> Shot:
    src = plan.source
    option = dict(plan.output.options).get("timecode", "auto")
    return Shot(
        output_path=plan.output.path, kind=plan.output.kind, rate=Fraction(src.rate),
        source_frames=tuple(src.frame_numbers), source_kind=src.kind, source_path=src.path,
        timecode=_written_timecode(src.timecode, option),
        metadata={"plan_digest": plan.digest(), "preset": plan.preset, "backend": plan.backend,
                  "seed": plan.seed, "source": os.path.abspath(src.path)})


def shot_from_manifest(data: dict, output_path: str) -> Shot:
    """Rebuild a Shot from a manifest's ``plan`` record (``Plan.to_dict``)."""
    try:
        plan = data["plan"]
        src = plan["source"]
        out = plan["output"]
        first, last = int(src["first_frame"]), int(src["last_frame"])
        missing = set(src.get("missing") or ())
        if src["kind"] == "movie":
            frames = tuple(range(first, first + int(src["frame_count"])))
        else:
            frames = tuple(n for n in range(first, last + 1) if n not in missing)
        rate = Fraction(str(src["rate"]))
        option = (out.get("options") or {}).get("timecode", "auto")
        return Shot(output_path=output_path, kind=out["kind"], rate=rate, source_frames=frames,
                    source_kind=src["kind"], source_path=src["path"],
                    timecode=_written_timecode(src.get("timecode"), option),
                    metadata={"plan_digest": data.get("plan_digest"), "preset": plan.get("preset"),
                              "backend": plan.get("backend"), "seed": plan.get("seed"),
                              "source": src["path"]})
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"the manifest of {output_path} lacks what a timeline needs ({exc!r})",
                         fix="pass the <output>.manifest.json written by `cinescale render`") from exc


# ------------------------------------------------------------------ media


@dataclass(frozen=True)
class _Media:
    """One file (movie) or one run of frames (sequence) placed on the track."""

    frames: tuple[int, ...]  # plate numbers, consecutive offsets
    path: str  # movie file, or the sequence pattern
    media_frames: tuple[int, ...]  # every frame the file holds (movie), or == frames (sequence)


_CHUNK_NAME = re.compile(r"\.(-?\d+)-(-?\d+)\.[^.]+$")


def _runs(shot: Shot, frames) -> list[tuple[int, ...]]:
    """Split frames into runs of consecutive offsets (timecode-contiguous)."""
    runs: list[list[int]] = []
    for f in sorted(frames, key=shot.offset):
        if runs and shot.offset(f) == shot.offset(runs[-1][-1]) + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return [tuple(r) for r in runs]


def sequence_media(shot: Shot, frames) -> list[_Media]:
    return [_Media(run, shot.output_path, run) for run in _runs(shot, frames)]


def movie_media(shot: Shot, files: list[str]) -> list[_Media]:
    """``files``: the final movie (all source frames) or chunk movies named
    ``stem.FIRST-LAST.ext`` (run.py's chunk naming)."""
    media = []
    idx = {n: i for i, n in enumerate(shot.source_frames)}
    for f in files:
        if os.path.abspath(f) == os.path.abspath(shot.output_path):
            media.append(_Media(shot.source_frames, f, shot.source_frames))
            continue
        m = _CHUNK_NAME.search(os.path.basename(f))
        if not m or int(m.group(1)) not in idx or int(m.group(2)) not in idx:
            raise OutputError(f"{f} is neither the render's movie nor one of its chunk movies",
                              fix="pass the outputs reported by the render")
        a, b = idx[int(m.group(1))], idx[int(m.group(2))]
        frames = shot.source_frames[a:b + 1]
        media.append(_Media(frames, f, frames))
    media.sort(key=lambda m: shot.offset(m.frames[0]))
    for prev, nxt in zip(media, media[1:]):
        if shot.offset(nxt.frames[0]) <= shot.offset(prev.frames[-1]):
            raise OutputError(f"movies {prev.path} and {nxt.path} overlap",
                              fix="render again with --overwrite, or assemble the chunks first")
    return media


def frames_in_output(shot: Shot, manifest: Manifest) -> tuple[set[int], dict | None]:
    """Frames the manifest verifies for this output, and its ``assembled`` record."""
    idx = {n: i for i, n in enumerate(shot.source_frames)}
    frames: set[int] = set()
    for u in manifest.verified_units().values():
        if u.first in idx and u.last in idx:
            frames.update(shot.source_frames[idx[u.first]: idx[u.last] + 1])
    data = manifest.read() or {}
    rec = data.get("assembled")
    if rec:
        p = manifest.root / rec["file"]
        try:
            st = p.stat()
            if st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"]:
                rec = None
        except OSError:
            rec = None
    return frames, rec


# ------------------------------------------------------------------ timeline


def _time_of(shot: Shot, frame: int, media: _Media):
    """The media time (in frames at the source rate) of ``frame``."""
    from opentimelineio import opentime

    rate = float(shot.rate)
    if shot.timecode:
        try:
            base = opentime.from_timecode(shot.timecode.replace(".", ";"), rate).value
        except (ValueError, RuntimeError) as exc:
            raise OutputError(f"timecode {shot.timecode} cannot be expressed at {shot.rate} fps ({exc})",
                              fix="set output option timecode = \"none\" for this render") from exc
        return opentime.RationalTime(base + shot.offset(frame), rate)
    if shot.kind == "sequence":
        return opentime.RationalTime(frame, rate)  # no timecode: hosts show file numbers
    # a movie without tmcd starts at 0 in every host
    return opentime.RationalTime(shot._index[frame] - shot._index[media.media_frames[0]], rate)


def _url(path: str) -> str:
    from opentimelineio import url_utils

    return url_utils.url_from_filepath(os.path.abspath(path))


def _reference(shot: Shot, media: _Media):
    import opentimelineio as otio
    from opentimelineio import opentime

    from cinescale_post.media.sequence import parse_pattern

    rate = float(shot.rate)
    start = _time_of(shot, media.media_frames[0], media)
    available = opentime.TimeRange(start, opentime.RationalTime(len(media.media_frames), rate))
    if shot.kind == "sequence":
        pat = parse_pattern(media.path)
        directory = os.path.abspath(pat.directory or ".")
        return otio.schema.ImageSequenceReference(
            target_url_base=_url(directory).rstrip("/") + "/", name_prefix=pat.head, name_suffix=pat.tail,
            start_frame=media.frames[0], frame_step=1, rate=rate, frame_zero_padding=pat.pad,
            missing_frame_policy=otio.schema.ImageSequenceReference.MissingFramePolicy.error,
            available_range=available)
    return otio.schema.ExternalReference(target_url=_url(media.path), available_range=available)


def build_timeline(shot: Shot, media: list[_Media]):
    """The OTIO Timeline for ``media`` placed at their source timecode."""
    import opentimelineio as otio
    from opentimelineio import opentime

    from cinescale_post.media.sequence import compress_ranges

    rate = float(shot.rate)
    name = output_base(shot.output_path).name
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    # clip per run of rendered frames: a movie's media may hold more frames
    # than were asked for; each run is cut out of it by source_range
    pieces = []
    for m in media:
        wanted = set(m.frames)
        for run in _runs(shot, [f for f in m.media_frames if f in wanted]):
            pieces.append((m, run))
    pieces.sort(key=lambda p: shot.offset(p[1][0]))
    if not pieces:
        raise OutputError(f"{shot.output_path} holds no rendered frames yet",
                          fix="render first; the timeline describes published frames only")
    cursor = shot.offset(pieces[0][1][0])
    for m, run in pieces:
        gap = shot.offset(run[0]) - cursor
        if gap > 0:
            track.append(otio.schema.Gap(source_range=opentime.TimeRange(
                opentime.RationalTime(0, rate), opentime.RationalTime(gap, rate))))
        clip = otio.schema.Clip(
            name=f"{name}.{run[0]}-{run[-1]}" if len(pieces) > 1 else name,
            media_reference=_reference(shot, m),
            source_range=opentime.TimeRange(_time_of(shot, run[0], m), opentime.RationalTime(len(run), rate)))
        clip.metadata["cinescale"] = {"frames": compress_ranges(list(run)), "source": shot.metadata.get("source")}
        track.append(clip)
        cursor = shot.offset(run[-1]) + 1
    first_media = pieces[0][0]
    timeline = otio.schema.Timeline(name=name, global_start_time=_time_of(shot, pieces[0][1][0], first_media))
    timeline.tracks.append(track)
    timeline.metadata["cinescale"] = {k: v for k, v in shot.metadata.items() if v is not None}
    return timeline


def write_timeline(timeline, path: Path) -> str:
    import opentimelineio as otio

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, otio.adapters.write_to_string(timeline, "otio_json"))
    return str(path)


def write_otio(plan, outputs: list[str], *, path: str | os.PathLike | None = None) -> str | None:
    """Write the timeline of a finished render next to its output; return its
    path (None for renders with nothing to conform: generated stills, or a
    plan without a source clip).

    ``outputs``: the render's outputs (``Summary.outputs``). Sequences
    describe every frame the output holds (the plan's frames and every
    verified unit); movies reference the assembled movie when ``outputs``
    (or the manifest) names it, else the chunk movies.
    """
    if plan.mode != "render" or plan.source is None or plan.output.kind not in ("movie", "sequence") \
            or not plan.source.rate:
        return None
    shot = shot_from_plan(plan)
    manifest = Manifest(plan.output.path)
    on_disk, assembled = frames_in_output(shot, manifest)
    if shot.kind == "sequence":
        media = sequence_media(shot, set(plan.frames) | on_disk)
    else:
        final = os.path.abspath(plan.output.path)
        files = [o for o in outputs if o.endswith(Path(plan.output.path).suffix)]
        if final in map(os.path.abspath, files) or assembled:
            media = movie_media(shot, [plan.output.path])
        else:
            chunk_files = {os.path.abspath(o) for o in files}
            chunk_files |= {os.path.abspath(manifest.root / u.file) for u in manifest.verified_units().values()}
            media = movie_media(shot, sorted(chunk_files))
    return write_timeline(build_timeline(shot, media), Path(path) if path else otio_path(plan.output.path))


__all__ = ["Shot", "build_timeline", "frames_in_output", "movie_media", "otio_path", "sequence_media",
           "shot_from_manifest", "shot_from_plan", "write_otio", "write_timeline"]
