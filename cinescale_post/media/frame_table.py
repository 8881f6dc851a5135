"""A movie's frame table: the presentation time of every frame and its key frames.

Built at open, without decoding: from the demuxer's sample index where the
container keeps a complete one (MOV/MP4 moov tables, AVI idx1), else from one
demux pass that sorts the packets' pts. MKV has no frame count in its header,
so the count comes from the packets; a file with fewer frames than it declares
is refused, or (``--on-bad-frame hold``/``black``) rendered with a note.
"""

from __future__ import annotations

import bisect
import os
from fractions import Fraction

import av
import numpy as np

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import FrameTable, ReadPolicy
from cinescale_post.media.stream_facts import FIX_DAMAGED, declared_end

# Containers whose demuxer builds a complete sample index at open (MOV/MP4:
# the moov tables; AVI: idx1), so the frame table needs no pass over the data.
_INDEXED = {"mov", "mp4", "avi"}
# Packets probed at open to learn the pts-dts offset of an indexed stream.
_HEAD_PACKETS = 64
# Containers without an index, whose demuxer seeks by a binary search on stamps (MPEG
# transport and program streams: .ts/.m2ts/.mts, .mpg/.vob). A seek to a key frame's pts
# lands after it (the search reads decode stamps, and every packet counts as a key); one
# second earlier plus the reorder delay lands at or before it (MEDIA_IO.md addendum).
_STAMP_SEEK = {"mpegts", "mpeg", "mpegtsraw", "mpegvideo"}
_STAMP_MARGIN_S = Fraction(1)


def build_frame_table(container, vs, path: str, policy: ReadPolicy) -> tuple[FrameTable, tuple[str, ...]]:
    """The frame table of video stream ``vs`` and the notes a plan records
    (frames missing but accepted under ``policy``). Leaves the demuxer at the
    first frame."""
    scan = _TableScan(container, vs, path, policy)
    return scan.build(), tuple(scan.notes)


def key_at_or_before(keys, index: int) -> int:
    """The key frame at or before table index ``index`` (``keys`` sorted)."""
    k = bisect.bisect_right(keys, index) - 1
    return keys[k] if k >= 0 else 0


def seek_points(keys, index: int) -> list[int]:
    """Table indices to seek to for ``index``: its key frame, then the one
    before (an open GOP's leading frames need it), then the start."""
    key = key_at_or_before(keys, index)
    points = [key]
    k = bisect.bisect_left(keys, key)
    if k >= 1:
        points.append(keys[k - 1])
    points.append(0)
    return list(dict.fromkeys(points))


class _TableScan:
    def __init__(self, container, vs, path: str, policy: ReadPolicy):
        self.container, self.vs, self.path, self.policy = container, vs, path, policy
        self.notes: list[str] = []

    def build(self) -> FrameTable:
        fmt_names = set(self.container.format.name.split(","))
        table = self._from_index() if fmt_names & _INDEXED else None
        return table or self._from_scan()

    def _by_count(self) -> bool:
        # AVI stores no presentation times: what the demuxer calls pts is a
        # parser's guess, and packed B-frames (DivX/Xvid) come out of the
        # decoder labelled out of order. The decoder's output order is right.
        return "avi" in self.container.format.name.split(",")

    def _from_index(self) -> FrameTable | None:
        """Frame table from the demuxer's sample index (no pass over the data).

        Index stamps are decode times; presentation times are decode times
        plus the stream's reorder offset, learnt from the first packets, when
        the decode steps are uniform (CFR) or nothing is reordered. Anything
        else (VFR with B-frames, an incomplete index) returns None: a scan.
        """
        vs = self.vs
        entries = [e for e in vs.index_entries if not e.is_discard]
        if len(entries) < 2 or (vs.frames and len(entries) < vs.frames):
            return None
        dts = np.fromiter((e.timestamp for e in entries), dtype=np.int64, count=len(entries))
        if np.any(np.diff(dts) <= 0):
            return None
        head_pts, head_dts = [], []
        for packet in self.container.demux(vs):
            if packet.dts is None or packet.is_discard:
                continue
            head_pts.append(packet.pts if packet.pts is not None else packet.dts)
            head_dts.append(packet.dts)
            if len(head_pts) >= min(_HEAD_PACKETS, len(entries)):
                break
        if not head_pts:
            return None
        uniform = np.ptp(np.diff(dts)) == 0
        reordered = any(p != d for p, d in zip(head_pts, head_dts))
        if reordered and not uniform:
            return None
        shift = min(head_pts) - min(head_dts)
        size = os.path.getsize(self.path)
        present = sum(1 for e in entries if e.pos < 0 or e.pos + e.size <= size)
        if present < len(entries):
            self._truncated(len(entries), present, "its index lists")
            entries, dts = entries[:present], dts[:present]
        pts = tuple(int(t) + shift for t in dts)
        keys = tuple(i for i, e in enumerate(entries) if e.is_keyframe) or (0,)
        self.container.seek(pts[0], stream=vs, backward=True, any_frame=False)
        by_count = self._by_count()
        return FrameTable(Fraction(vs.time_base), pts, keys, by_count=by_count, built_from="index",
                          seek_offset=shift if by_count else 0)

    def _from_scan(self) -> FrameTable:
        """Sorted pts of every video packet (one demux pass, no decoding)."""
        vs = self.vs
        pts, keys, listed, head, dts, key_dts = [], [], 0, [], [], []
        try:
            # back to the start after a look at the index; transport streams whose clock
            # wrapped (2^33 ticks) start at a negative stamp once FFmpeg unwraps it
            start = min(0, vs.start_time or 0)
            if self._stamp_seek():
                start -= int(_STAMP_MARGIN_S / Fraction(vs.time_base))
            self.container.seek(start, stream=vs, backward=True, any_frame=True)
        except av.FFmpegError:
            pass  # nothing to seek in (an empty file): the scan below says so
        try:
            for packet in self.container.demux(vs):
                if packet.size == 0 and packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                listed += 1
                if packet.is_discard:  # cut by an edit list: never shown
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    continue
                pts.append(t)
                dts.append(packet.dts)
                if len(head) < _HEAD_PACKETS and packet.dts is not None:
                    head.append(t - packet.dts)
                if packet.is_keyframe:
                    keys.append(t)
                    key_dts.append(packet.dts)
        except av.FFmpegError as exc:
            if not pts:
                raise InputError(f"{self.path} cannot be read: {exc}", fix=FIX_DAMAGED) from exc
            self._truncated(None, len(pts), f"reading stopped ({exc}) after")
        if not pts:
            raise InputError(f"{self.path} has no video frames",
                             fix="the clip is empty; export it again with picture")
        pts.sort()
        by_count = self._by_count()
        drops, stamps = (), ()
        if by_count and vs.frames and listed < vs.frames and None not in dts:
            pts, keys, drops, stamps = self._with_drops(pts, dts, keys, key_dts, vs.frames)
        if vs.frames and listed + len(drops) < vs.frames:
            self._truncated(vs.frames, listed, "its index lists")
        if not vs.frames:  # MKV, MXF...: no count, so compare with the declared duration
            self._check_duration(pts)
        if keys and not by_count:
            pts = self._from_first_key(pts, min(keys))
        index_of = {t: i for i, t in enumerate(pts)}
        key_index = tuple(sorted(index_of[k] for k in set(keys) if k in index_of)) or (0,)
        offset = max(head, default=0) if by_count else 0
        if self._stamp_seek():
            offset = max(0, max(head, default=0)) + int(_STAMP_MARGIN_S / Fraction(vs.time_base))
        self.container.seek(stamps[0] if stamps else pts[0] - offset, stream=vs, backward=True, any_frame=False)
        return FrameTable(Fraction(vs.time_base), tuple(pts), key_index, by_count=by_count, built_from="scan",
                          seek_offset=offset, drops=drops, key_stamps=stamps)

    def _with_drops(self, pts, dts, keys, key_dts, listed_in_index: int):
        """(pts, keys, drops, key stamps) of an AVI whose index lists more chunks
        than the demuxer gives, where the missing ones are empty chunks between
        others (a capture's dropped frames): they are frames showing the picture
        before them. AVI's dts is the chunk index (its pts a parser's guess, which
        a gap throws off), so the table is the chunk indices, shifted to the pts;
        keys are sought by their dts. Else the table as it was."""
        gaps = sorted(set(range(dts[0], max(dts) + 1)) - set(dts))
        if not gaps or len(dts) + len(gaps) != listed_in_index:
            return pts, keys, (), ()
        shift = min(pts) - min(dts)
        full = sorted(dts + gaps)
        at = {d: i for i, d in enumerate(full)}
        self.notes.append(f"{self.path}: {len(gaps)} drop frame(s) (empty AVI chunks, frames a capture dropped) "
                          "repeat the picture before them, as players and ffmpeg show them")
        order = sorted(key_dts)
        return [d + shift for d in full], [d + shift for d in order], tuple(at[g] for g in gaps), tuple(order)

    def _stamp_seek(self) -> bool:
        return bool(set(self.container.format.name.split(",")) & _STAMP_SEEK)

    def _from_first_key(self, pts: list[int], first_key: int) -> list[int]:
        """Drop the frames shown before the first key frame: a stream cut mid-GOP
        (a capture, a broadcast recording) starts with pictures whose references
        are not in the file, and FFmpeg's decoders give none of them out."""
        kept = [t for t in pts if t >= first_key]
        if len(kept) < len(pts):
            self.notes.append(f"{self.path}: the first {len(pts) - len(kept)} frame(s) come before the stream's "
                              "first key frame (it was cut mid-GOP) and cannot be decoded; the clip starts at "
                              "the key frame")
        return kept

    def _truncated(self, declared: int | None, present: int, what: str) -> None:
        """A file with fewer frames than it declares: refuse, or (``--on-bad-frame``
        hold/black) render the frames present and say so in the plan."""
        if declared is None:
            message = f"{self.path} is truncated or incomplete: {what} {present} frames"
        else:
            message = (f"{self.path} is truncated or incomplete: {what} {declared} frames "
                       f"but only {present} are in the file")
        if self.policy.on_bad_frame == "error":
            raise InputError(message, fix=f"re-export it or copy it again; or render the {present} frames "
                                          f"that exist with --on-bad-frame hold (or black)")
        self.notes.append(f"{message}; rendering the {present} frames present "
                           f"(--on-bad-frame {self.policy.on_bad_frame})")

    def _check_duration(self, pts: list[int]) -> None:
        declared = declared_end(self.vs)
        if declared is None:
            return
        tb = Fraction(self.vs.time_base)
        if len(pts) > 1:
            longest = max(b - a for a, b in zip(pts, pts[1:])) * tb
        else:
            longest = 1 / Fraction(self.vs.average_rate or self.vs.guessed_rate or 24)
        present = pts[-1] * tb + longest
        # More than two of the longest frames absent: data was cut off (a
        # copy stopped early). Smaller differences are container rounding.
        if declared - present > 2 * longest:
            self._truncated(None, len(pts), f"it declares {float(declared):.3f} s of video but the data "
                                            f"ends at {float(present):.3f} s:")
