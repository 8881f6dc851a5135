"""A movie whose interlaced or telecined fields are made progressive on read.

:func:`open_fields` wraps an open :class:`~cinescale_post.media.movie_reader.MovieReader`
when :func:`media.fields.decide` (or the plan) says so. ``info`` then describes
the delivered frames: their count (double for ``field_rate = "field"``, 4/5
for inverse telecine), rate, pts and start timecode (the same running time at
the new rate, ``media.timecode.timecode_at_rate``); ``fields`` records what
was done and a note says it in words. Output frame ``j`` is computed from the
source frames its filter looks at (``FieldPlan.needs``), decoded once and kept
while the next group needs them, so every chunking renders the same frames;
deinterlacing read forward keeps one live graph (each coded frame filtered
once), inverse telecine a fresh graph per 5-frame cycle.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import Frame, Reader, SourceInfo
from cinescale_post.media.alpha import frame_alpha
from cinescale_post.media.fields import CADENCE_SAMPLE, Chain, FieldPlan, decide, frame_field_order, run_chain
from cinescale_post.media.movie_reader import BadFrame, MovieReader, checked_indices
from cinescale_post.media.timecode import timecode_at_rate

_FIX_BAD = ("--on-bad-frame hold feeds the nearest good frame to the filter in its place; or re-export "
            "the clip (or read it as coded with --set input.deinterlace=off --set input.ivtc=off)")


def open_fields(movie: MovieReader, planned: SourceInfo | None = None) -> Reader:
    """``movie`` itself, or a :class:`FieldReader` around it."""
    if planned is not None:
        return FieldReader(movie, FieldPlan.parse(planned.fields), planned) if planned.fields else movie
    src = movie.info

    def sample():
        try:
            return [movie.decoded(i) for i in range(min(CADENCE_SAMPLE, src.frame_count))]
        except BadFrame:
            return []  # a damaged head: no cadence check (the render meets the frame later)

    order = None
    if src.interlaced:
        try:
            order = frame_field_order(movie.decoded(0), movie.table.time_base)
        except BadFrame:
            pass
    plan, note = decide(movie.policy, src.interlaced, order, src.rate, sample, movie.table.time_base)
    if plan is None:
        if note:
            movie.note(f"{src.path}: {note}")
        return movie
    return FieldReader(movie, plan, field_info(src, plan, note))


def field_info(src: SourceInfo, plan: FieldPlan, seen: str) -> SourceInfo:
    """The SourceInfo of the frames ``plan`` delivers from source ``src``."""
    n = plan.count(src.frame_count)
    pts = np.asarray(src.pts, dtype=np.int64)
    if plan.kind == "ivtc":
        rate = src.rate * Fraction(4, 5)
        tb = 1 / rate
        start = round(Fraction(int(pts[0])) * src.time_base * rate)
        out_pts = tuple(start + k for k in range(n))
    elif plan.per_field:
        rate, tb = src.rate * 2, src.time_base / 2
        step = np.diff(pts, append=pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1))
        out_pts = tuple(int(v) for pair in zip(2 * pts, 2 * pts + step) for v in pair)
    else:
        rate, tb, out_pts = src.rate, src.time_base, tuple(src.pts)
    tc = timecode_at_rate(src.timecode, src.rate, rate) if src.timecode and rate != src.rate else src.timecode
    note = f"{src.path}: {seen}; {plan.describe()}"
    if n != src.frame_count:
        note += f": {src.frame_count} coded frames at {float(src.rate):.3f} fps -> {n} at {float(rate):.3f} fps"
    return dataclasses.replace(src, rate=rate, time_base=tb, pts=out_pts, fields=plan.spec, timecode=tc,
                               frame_numbers=tuple(range(src.first_frame, src.first_frame + n)),
                               notes=src.notes + (note,))


class FieldReader(Reader):
    """Frames of ``movie`` through FFmpeg's deinterlacer or inverse telecine."""

    def __init__(self, movie: MovieReader, plan: FieldPlan, info: SourceInfo):
        self.movie, self.plan, self.info = movie, plan, info
        self.policy = movie.policy
        self._n = len(movie.table.pts)  # coded frames
        self._cache: dict = {}  # coded index -> decoded av frame
        self._group: tuple[int, list] | None = None  # (group, its output av frames)
        self._subs: dict[int, str] = {}
        self._held: set[int] = set()
        # deinterlacing, read forward: one live graph, outputs handed out as they come (``_stream``)
        self._live: Chain | None = None
        self._fed = self._out_at = 0  # next coded frame to feed; coded frame of the next outputs
        self._queue: list = []  # outputs not yet given to a coded frame
        self._done: dict[int, list] = {}  # coded frame -> its outputs

    def substitutions(self) -> dict[int, str]:
        return dict(self._subs)

    def read(self, numbers: Iterable[int]) -> Iterator[Frame]:
        for number, index in checked_indices(numbers, self.info):
            av_frame = self._output(index)
            rgb = self.movie.to_rgb(av_frame, number)
            yield Frame(number=number, index=index, rgb=rgb, pts=self.info.pts[index],
                        time_base=self.info.time_base, alpha=frame_alpha(av_frame))

    def _output(self, index: int):
        group, pos = self.plan.group(index)
        if self.plan.kind == "deinterlace":
            self._group = (group, self._stream(group))
        elif self._group is None or self._group[0] != group:
            coded, skip, keep = self.plan.needs(index, self._n)
            self._cache = {i: f for i, f in self._cache.items() if i >= coded.start}
            frames = [self._coded(i, group) for i in coded]
            outs = run_chain(self.plan.chain(), frames, self.movie.table.time_base, self.plan.coded_rate(self.info.rate))
            self._group = (group, outs[skip:skip + keep])
        outs = self._group[1]
        if pos >= len(outs):
            raise InputError(f"{self.info.path}: frame {self.info.first_frame + index}: the "
                             f"{self.plan.filter} filter gave {len(outs)} frame(s) where {pos + 1} were expected",
                             fix=_FIX_BAD)
        if group in self._held:
            self._subs[self.info.first_frame + index] = "hold (a damaged coded frame fed as its neighbour)"
        return outs[pos]

    def _stream(self, i: int) -> list:
        """The outputs of coded frame ``i`` from a live deinterlacing graph: read
        forward, each coded frame is fed once (what ``ffmpeg -vf bwdif`` does);
        elsewhere a new graph starts at frame ``i - 1``, which gives frame ``i``
        exactly what a graph from the start gives (the filter reads i-1, i, i+1)."""
        if i in self._done:
            return self._done[i]
        if self._live is None or not self._out_at <= i <= self._fed + 1:
            lo = max(0, i - 1)
            self._live = Chain(self.plan.chain(), self._coded(lo, lo), self.movie.table.time_base,
                               self.plan.coded_rate(self.info.rate))
            self._fed, self._out_at, self._queue, self._done = lo, lo, [], {}
        k = 2 if self.plan.per_field else 1
        while self._out_at <= i:
            if len(self._queue) >= k:
                self._done[self._out_at], self._queue = self._queue[:k], self._queue[k:]
                self._out_at += 1
            elif self._fed < self._n:
                self._queue += self._live.push(self._coded(self._fed, self._fed))
                self._fed += 1
            elif self._fed == self._n:
                self._queue += self._live.push(None)  # the end: the last frames come out
                self._fed += 1
            else:
                break  # fewer outputs than coded frames: _output says so
        self._done = {j: v for j, v in self._done.items() if j >= i - 1}
        self._cache = {j: f for j, f in self._cache.items() if j >= self._fed - 2}
        return self._done.get(i, [])

    def _coded(self, i: int, group: int):
        if i not in self._cache:
            try:
                self._cache[i] = self.movie.decoded(i)
            except BadFrame as exc:
                if self.policy.on_bad_frame == "error" or not self._cache:
                    raise InputError(f"{self.info.path}: coded frame {i} cannot be decoded ({exc.reason})",
                                     fix=_FIX_BAD) from None
                self._cache[i] = self._cache[max(self._cache)]  # the nearest earlier good frame
                self._held.add(group)
        return self._cache[i]

    def close(self) -> None:
        self._cache.clear()
        self._group = None
        self.movie.close()


__all__ = ["FieldReader", "field_info", "open_fields"]
