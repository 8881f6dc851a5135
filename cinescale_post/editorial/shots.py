"""From a cut to the shots to render: which source frames each clip uses, merged.

Times are in each source's own media time (timecode frames at its rate, as
OTIO's ``source_range`` and ``available_range`` give them):

* a clip uses its trimmed source range, stretched by a ``LinearTimeWarp``
  (``time_scalar`` 2: twice the frames; slower or a ``FreezeFrame``: the
  source range itself, which the NLE still spans), plus the frames a
  transition needs on either side (``Track.handles_of_child``), plus
  ``handles`` frames each side;
* uses of one source with the same per-shot settings that overlap or touch
  are merged, so every source frame is rendered once;
* where one use ends and the next begins at the next frame (a reel, a
  flattened export: the timeline's own edit points), that frame starts a new
  shot: no temporal window crosses it (``window.cuts``).

Per-shot settings: ``clip.metadata["cinescale"]`` (``preset``, ``prompt``,
``negative_prompt``, ``seed``, ``set``: a list of ``KEY=VALUE``) or a marker
named ``cinescale`` whose comment holds ``KEY=VALUE`` lines (keys other than
those four are ``--set`` overrides).
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from cinescale_post.contracts.errors import InputError

SETTING_KEYS = ("preset", "prompt", "negative_prompt", "seed")


@dataclass(frozen=True)
class Use:
    """One clip's use of a source, in media frames (``first``..``last`` inclusive)."""

    clip: str
    media: str
    first: int
    last: int
    shown_first: int  # the clip's own range, without transition frames and handles
    shown_last: int
    rate: Fraction
    settings: tuple  # sorted (key, value) pairs


@dataclass(frozen=True)
class Shot:
    """A merged range of one source: one render."""

    name: str
    media: str
    first: int
    last: int
    rate: Fraction
    settings: tuple
    clips: tuple[str, ...]
    cuts: tuple[int, ...]  # media frames where a new shot starts inside the range

    @property
    def frames(self) -> int:
        return self.last - self.first + 1


def settings_of(clip) -> tuple:
    """The clip's per-shot settings as sorted (key, value) pairs (``set``: a tuple)."""
    meta = dict(clip.metadata.get("cinescale", {}) or {})
    out = {k: meta[k] for k in SETTING_KEYS if meta.get(k) not in (None, "")}
    sets = list(meta.get("set", []) or [])
    for marker in clip.markers:
        if marker.name != "cinescale":
            continue
        for line in (getattr(marker, "comment", "") or "").splitlines():
            if "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if key in SETTING_KEYS:
                out[key] = value
            else:
                sets.append(f"{key}={value}")
    if "seed" in out:
        out["seed"] = int(out["seed"])
    if sets:
        out["set"] = tuple(sets)
    return tuple(sorted(out.items()))


def _frames(t, rate: Fraction) -> int:
    return round(t.value_rescaled_to(float(rate)))


def video_clips(timeline) -> list:
    """Every clip with media on the video tracks of ``timeline``, in order,
    clips inside nested stacks (compound clips, nested sequences) included:
    the whole trimmed range of a nested clip is used, which covers whatever
    part of it the stack shows. Generators pass by."""
    import opentimelineio as otio

    clips = []
    for track in timeline.video_tracks():
        for clip in track.find_clips(shallow_search=False):
            parent = clip.parent()
            if getattr(parent, "kind", otio.schema.TrackKind.Video) != otio.schema.TrackKind.Video:
                continue  # the audio of a nested sequence
            if isinstance(clip.media_reference, otio.schema.GeneratorReference):
                continue
            clips.append(clip)
    return clips


def clip_uses(timeline, *, handles: int, find_media) -> tuple[list[Use], list[str]]:
    """(uses, missing media descriptions) of every video clip of ``timeline``.
    ``find_media(clip) -> path | None``; gaps, generators and audio pass by."""
    import opentimelineio as otio

    uses, missing = [], []
    for item in video_clips(timeline):
        track = item.parent()
        path = find_media(item)
        if path is None:
            missing.append(describe_media(item))
            continue
        sr = item.trimmed_range()
        rate = Fraction(sr.start_time.rate).limit_denominator(1001)
        scalar = 1.0
        for effect in item.effects:
            if isinstance(effect, otio.schema.LinearTimeWarp):
                scalar *= effect.time_scalar
        start = _frames(sr.start_time, rate)
        length = max(1, math.ceil(_frames(sr.duration, rate) * abs(scalar))) if scalar else 1
        before, after = track.handles_of_child(item)
        pre = _frames(before, rate) if before is not None else 0
        post = _frames(after, rate) if after is not None else 0
        # a slow-motion or frozen clip still spans its source range in the NLE: render that much, so
        # the relinked clip lies inside its new media for every importer
        end = max(length, _frames(sr.duration, rate))
        first = start - math.ceil(pre * max(1.0, abs(scalar))) - handles
        last = start + end - 1 + math.ceil(post * max(1.0, abs(scalar))) + handles
        uses.append(Use(item.name or Path(path).stem, path, first, last, start, start + length - 1, rate,
                        settings_of(item)))
    return uses, missing


def merge(uses: list[Use], clamp) -> list[Shot]:
    """Shots: uses of one source and one setting that overlap or touch,
    merged; ``clamp(media) -> (first, last)`` media frames the source has."""
    groups: dict[tuple, list[Use]] = {}
    for u in uses:
        groups.setdefault((u.media, u.settings), []).append(u)
    shots = []
    for (media, settings), group in groups.items():
        lo, hi = clamp(media)
        spans: list[list] = []
        for u in sorted(group, key=lambda u: (u.first, u.last)):
            a, b = max(lo, u.first), min(hi, u.last)
            if a > b:
                continue
            if spans and a <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], b)
                spans[-1][2].append(u)
            else:
                spans.append([a, b, [u]])
        for a, b, members in spans:
            edits = {u.shown_first for u in members} & {u.shown_last + 1 for u in members}
            cuts = tuple(sorted(c for c in edits if a < c <= b))
            name = safe_name(f"{members[0].clip}_{a}-{b}")
            shots.append(Shot(name, media, a, b, members[0].rate, settings, tuple(u.clip for u in members), cuts))
    return sorted(shots, key=lambda s: (s.media, s.first))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "shot"


def describe_media(clip) -> str:
    ref = clip.media_reference
    url = getattr(ref, "target_url", None)
    reel = (clip.metadata.get("cmx_3600") or {}).get("reel")
    return f"clip {clip.name!r}: " + (f"{url}" if url else f"reel {reel or clip.name!r}")


def media_finder(cut_path: str | os.PathLike, search_paths=()):
    """``find(clip) -> path | None``: a ``target_url`` (file URL or path,
    relative to the cut), else a file in ``search_paths`` named like the clip's
    reel or name (EDLs name reels, not files)."""
    base = Path(cut_path).resolve().parent
    index: dict[str, str] = {}  # file name and stem -> path; the first search path that has it wins
    for d in (Path(d) for d in search_paths):
        for p in sorted(d.rglob("*")) if d.is_dir() else []:
            if p.is_file():
                index.setdefault(p.name, str(p.resolve()))
                index.setdefault(p.stem, str(p.resolve()))

    def in_search(names):
        return next((index[n] for n in names if n in index), None)

    def find(clip):
        url = getattr(clip.media_reference, "target_url", None)
        names = []
        if url:
            parsed = urllib.parse.urlparse(url)
            local = urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url
            p = Path(local) if Path(local).is_absolute() else base / local
            if p.is_file():
                return str(p.resolve())
            names.append(Path(local).name)
        reel = (clip.metadata.get("cmx_3600") or {}).get("reel")
        names += [n for n in (reel, clip.name) if n]
        return in_search(names)

    return find


def missing_error(missing: list[str], search_paths) -> InputError:
    listed = "\n  ".join(missing)
    where = ", ".join(map(str, search_paths)) or "no --search-path given"
    return InputError(f"{len(missing)} clip(s) of the cut have no media (searched: {where}):\n  {listed}",
                      fix="relink them in the editor, or add the folders that hold the sources with "
                          "--search-path DIR (EDL reels are matched by file name)")


__all__ = ["Shot", "Use", "clip_uses", "media_finder", "merge", "missing_error", "settings_of"]
