"""Temporal windows, their blend weights, and chunks: pure index arithmetic.

The layout is a function of the *whole source* (its frame numbers), the
window size/overlap and the backend's frame rule — never of the requested
range — so a farm task rendering frames 1011-1020 runs exactly the windows a
full render runs for those frames, and gets the same pixels.

Blending: a frame covered by several windows is the weighted mean of their
renders. Each window ramps its weight up over the frames it shares with the
previous window and down over those it shares with the next one (linear, or
a raised-cosine "Hann" ramp); weights are normalised so they sum to 1 for
every frame. No window depends on another having finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cinescale_post.contracts.engine import FrameRule


@dataclass(frozen=True)
class Window:
    """One backend call.

    ``frames``: source frame numbers the backend renders (length accepted by
    the frame rule; the last entries may repeat the final frame as padding).
    ``context_before``/``context_after``: extra frames read for temporal
    context (``--handles``), rendered by the backend but never written.
    ``weights``: raw (unnormalised) blend weight per distinct real frame.
    """

    index: int
    frames: tuple[int, ...]
    context_before: tuple[int, ...] = ()
    context_after: tuple[int, ...] = ()
    weights: dict[int, float] = field(default_factory=dict, compare=False)

    @property
    def real_frames(self) -> tuple[int, ...]:
        seen: list[int] = []
        for f in self.frames:
            if f not in seen:
                seen.append(f)
        return tuple(seen)

    @property
    def all_frames(self) -> tuple[int, ...]:
        return self.context_before + self.frames + self.context_after


def _ramp(i: int, n: int, blend: str) -> float:
    """Weight of the i-th (0-based) of n shared frames, rising towards 1."""
    t = (i + 1) / (n + 1)
    if blend == "hann":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    return t


def layout(source_frames: tuple[int, ...] | list[int], *, size: int, overlap: int,
           rule: FrameRule = FrameRule(), blend: str = "linear", handles: int = 0,
           cuts: tuple[int, ...] | list[int] = ()) -> list[Window]:
    """Cut the source into windows of ``size`` frames overlapping by at least
    ``overlap``; the last window is aligned to the end of the source. A source
    shorter than ``size`` becomes one window padded (repeating its last frame)
    to the smallest length the rule accepts. ``cuts``: frame numbers where a
    new shot starts; each shot is laid out on its own, so no window, context
    frame or blend ever spans a cut.

    >>> [w.frames for w in layout(range(1, 8), size=3, overlap=1)]
    [(1, 2, 3), (3, 4, 5), (5, 6, 7)]
    >>> [w.frames for w in layout(range(1, 8), size=3, overlap=1, cuts=[5])]
    [(1, 2, 3), (2, 3, 4), (5, 6, 7)]
    """
    src = list(source_frames)
    inside = sorted({c for c in cuts if src and src[0] < c <= src[-1]})
    if inside:
        out: list[Window] = []
        for shot in _shots(src, inside):
            for w in layout(shot, size=size, overlap=overlap, rule=rule, blend=blend, handles=handles):
                out.append(Window(len(out), w.frames, w.context_before, w.context_after, w.weights))
        return out
    n = len(src)
    if n == 0:
        return []
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"window size {size} / overlap {overlap}: need size >= 1, 0 <= overlap < size")
    if n <= size:
        length = size if n == size else _smallest_accepted(n, rule)
        frames = tuple(src) + (src[-1],) * (length - n)
        spans = [(0, n, frames)]
    else:
        stride = size - overlap
        starts = list(range(0, n - size + 1, stride))
        if starts[-1] != n - size:
            starts.append(n - size)
        spans = [(s, s + size, tuple(src[s:s + size])) for s in starts]
    windows = []
    for k, (a, b, frames) in enumerate(spans):
        prev_end = spans[k - 1][1] if k > 0 else a
        next_start = spans[k + 1][0] if k + 1 < len(spans) else b
        n_in = max(0, prev_end - a)  # frames shared with the previous window
        n_out = max(0, b - next_start)  # frames shared with the next window
        weights = {}
        for pos in range(a, b):
            w = 1.0
            if pos - a < n_in:
                w = min(w, _ramp(pos - a, n_in, blend))
            if b - 1 - pos < n_out:
                w = min(w, _ramp(b - 1 - pos, n_out, blend))
            weights[src[pos]] = w
        before = tuple(src[max(0, a - handles):a])
        after = tuple(src[b:b + handles])
        windows.append(Window(k, frames, before, after, weights))
    return windows


def _shots(src: list[int], cuts: list[int]) -> list[list[int]]:
    """``src`` split before every cut frame."""
    out, cur = [], []
    marks = set(cuts)
    for f in src:
        if f in marks and cur:
            out.append(cur)
            cur = []
        cur.append(f)
    return out + [cur]


def plan_layout(plan, rule: FrameRule) -> list[Window]:
    """The windows of ``plan`` (its source, window settings, handles and cuts)."""
    return layout(plan.source.frame_numbers, size=plan.window.size, overlap=plan.window.overlap, rule=rule,
                  blend=plan.window.blend, handles=plan.handles, cuts=plan.window.cuts)


def _smallest_accepted(n: int, rule: FrameRule) -> int:
    length = max(n, rule.offset or 1)
    while not rule.accepts(length):
        length += 1
    return length


def coverage(windows: list[Window]) -> dict[int, list[tuple[int, float]]]:
    """frame -> [(window index, normalised weight)], in window order."""
    raw: dict[int, list[tuple[int, float]]] = {}
    for w in windows:
        for f, wt in w.weights.items():
            raw.setdefault(f, []).append((w.index, wt))
    out = {}
    for f, items in raw.items():
        total = sum(wt for _, wt in items)
        out[f] = [(i, wt / total) for i, wt in items]
    return out


@dataclass(frozen=True)
class Chunk:
    """A group of output frames run as one executor task. ``id`` is stable
    (derived from the global chunk grid), ``frames`` are the frames to write,
    ``windows`` the window indices that cover them."""

    id: str
    frames: tuple[int, ...]
    windows: tuple[int, ...]


def chunks(source_frames: tuple[int, ...] | list[int], wanted: list[int] | tuple[int, ...],
           windows: list[Window], chunk_size: int) -> list[Chunk]:
    """Group ``wanted`` frames by the global chunk grid (``chunk_size`` source
    frames from the first source frame; 0: one chunk)."""
    src = list(source_frames)
    pos = {f: i for i, f in enumerate(src)}
    cov = coverage(windows)
    groups: dict[int, list[int]] = {}
    for f in sorted(wanted):
        key = pos[f] // chunk_size if chunk_size else 0
        groups.setdefault(key, []).append(f)
    out = []
    for key in sorted(groups):
        frames = tuple(groups[key])
        wins = sorted({i for f in frames for i, _ in cov[f]})
        out.append(Chunk(f"{frames[0]}-{frames[-1]}", frames, tuple(wins)))
    return out


# ------------------------------------------------------------------ the window as the unit of work


def snap_chunk(chunk: int, size: int, overlap: int) -> tuple[int, str | None]:
    """Chunk size (source frames) made of whole window strides, and a note
    when it changed. Windows start every ``size - overlap`` frames from the
    first source frame, so a chunk of ``k`` strides owns ``k`` windows and
    shares only ``overlap`` frames with the next chunk (handed on, never
    rendered twice). ``chunk`` 0 (one chunk) and image backends (stride 1)
    are unchanged.

    >>> snap_chunk(48, 81, 8)[0], snap_chunk(200, 81, 8)[0], snap_chunk(48, 1, 0)[0]
    (73, 219, 48)
    """
    stride = size - overlap
    if chunk <= 0 or stride <= 1 or chunk % stride == 0:
        return chunk, None
    k = max(1, round(chunk / stride))
    snapped = k * stride
    return snapped, (f"output.chunk {chunk} snapped to {snapped} frames ({k} window stride(s) of {stride}: "
                     f"window {size}, overlap {overlap}) so each window is rendered once; set "
                     f"output.chunk to a multiple of {stride} to silence this")


def assign_windows(windows: list[Window], chunk_list: list[Chunk], source_frames, *,
                   run_frames, job_frames=None) -> dict[int, str | None]:
    """Which chunk of this run renders each window its chunks touch:
    ``window index -> chunk id``, or None when another task of the farm job
    renders it (and hands its contributions on through the manifest).

    A window belongs to the task whose frame range holds its first frame
    (clamped to the job's range), so tasks of one job, however the farm
    chunks it, split the windows between them without talking to each
    other; inside this run it goes to the first chunk that needs it (the
    local executor then has its contributions in memory when later chunks
    need them). ``run_frames``: the frames this run renders (the plan's);
    ``job_frames``: every frame of the farm job this run is part of
    (default: the run's own)."""
    pos = {f: i for i, f in enumerate(source_frames)}
    run_pos = [pos[f] for f in run_frames if f in pos]
    job_pos = [pos[f] for f in (job_frames or run_frames) if f in pos]
    if not run_pos:
        return {}
    run_lo, run_hi = min(run_pos), max(run_pos)
    job_lo = min(job_pos + [run_lo])
    out: dict[int, str | None] = {}
    for c in chunk_list:
        for wi in c.windows:
            if wi in out:
                continue
            start = max(pos[windows[wi].frames[0]], job_lo)
            out[wi] = c.id if run_lo <= start <= run_hi else None
    return out
