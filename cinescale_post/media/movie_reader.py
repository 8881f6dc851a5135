"""Movie files in (MOV, MP4, MKV, MXF...; any codec PyAV decodes), frame-accurate.

What this reader guarantees, and why (measured in reference/MEDIA_IO.md):

* **Frame table** (``media.frame_table``) from the index or the packets, never
  decoded: the count is exact in every container. Frame ``i`` is plate number
  ``first_frame + i``. **VFR** and exact rates: ``media.frame_rate``.
* **Random access** seeks to the key frame at or before the target and
  decodes forward until ``frame.pts >= target``; a naive seek returns the
  wrong frame on long-GOP B-frame clips. Ascending reads decode forward
  instead of re-seeking when no key frame lies between (section 2.4).
* **Exact colour** (``media.frame_rgb``): our own matrix, not swscale; an untagged
  matrix is BT.709 above 576 lines, else BT.601 (``Colour.assumed``).
* **Rotation** (display matrix) is recorded in ``SourceInfo.rotation``,
  counter-clockwise degrees as PyAV reports it; pixels stay in coded
  orientation. Whoever sizes the output uses ``SourceInfo.display_size``.
* **Streaming.** A reader holds at most one decoded frame beyond the one it
  yields; the decoder's own queue is bounded by its thread count.

Errors are :class:`InputError` naming the file (and the frame, when decoding
fails), with the fix.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
from fractions import Fraction
from typing import Iterable, Iterator

import av
import numpy as np

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import AudioStreamInfo, Frame, FrameTable, Reader, ReadPolicy, SourceInfo
from cinescale_post.media.alpha import frame_alpha
from cinescale_post.media.avi_order import DecodeOrder, unplaceable
from cinescale_post.media.frame_rate import exact_rate, rate_and_vfr
from cinescale_post.media.frame_rgb import frame_to_rgb, is_ycbcr
from cinescale_post.media.frame_table import build_frame_table, key_at_or_before, seek_points
from cinescale_post.media.stream_facts import (FIX_DAMAGED, TEXT_FORMATS, open_error, pick_video_stream,
                                               resolve_colour, timecode)

log = logging.getLogger(__name__)

_FIX_BAD = ("--on-bad-frame hold repeats the nearest earlier good frame, --on-bad-frame black puts black "
            "in its place (both recorded in the manifest); or re-export the clip")


#: what ``MovieReader._frames`` yields in place of a packet the decoder rejected
_LOST = object()
_PICT_B = 3  # AVPictureType AV_PICTURE_TYPE_B (PyAV's frame.pict_type)
_AHEAD = 8  # pictures kept while waiting for one the decoder gives out of order (B-frame runs + threads)


def checked_indices(numbers: Iterable[int], info: SourceInfo) -> Iterator[tuple[int, int]]:
    """(plate number, index) for ascending ``numbers`` inside the clip ``info``."""
    last = None
    for number in numbers:
        index = number - info.first_frame
        if not 0 <= index < info.frame_count:
            raise InputError(f"frame {number} is not in {info.path} (frames {info.first_frame}-{info.last_frame})",
                             fix="choose frames inside the clip's range (see `cinescale probe`)")
        if last is not None and number <= last:
            raise ValueError(f"read() takes ascending frame numbers; {number} came after {last}")
        last = number
        yield number, index


class BadFrame(Exception):
    """The frame at ``index`` has no picture (the reason says why); ``decoded`` raises it."""

    def __init__(self, index: int, reason: str):
        self.index, self.reason = index, reason
        super().__init__(reason)


class MovieReader(Reader):
    """A movie opened with PyAV. ``info`` is complete once constructed.

    ``policy`` (:class:`ReadPolicy`) decides about frames without a picture;
    ``planned`` (the :class:`SourceInfo` a plan probed from this file) skips
    the frame table and the first-frame decode: a render task opens in O(1).

    >>> with MovieReader("plate.mov", first_frame=1001) as r:   # doctest: +SKIP
    ...     frames = list(r.read([1001, 1024]))   # two Frames, rgb (H, W, 3) float32
    """

    def __init__(self, path: str | os.PathLike, first_frame: int = 1001, *,
                 policy: ReadPolicy | None = None, planned: SourceInfo | None = None):
        self.path = os.fspath(path)
        self.first_frame = int(first_frame)
        self.policy = policy or ReadPolicy()
        self._subs: dict[int, str] = {}
        self._last_good: tuple[int, np.ndarray] | None = None
        self._decoder: Iterator | None = None
        self._pos: int | None = None  # index of the last frame pulled from the decoder
        self._pending = None  # (index, av frame) pulled but not yet handed out
        self._notes: list[str] = []
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise open_error(self.path, exc) from exc
        try:
            if self._container.format.name in TEXT_FORMATS:
                raise InputError(
                    f"{self.path} is not a media file FFmpeg can read (it is text; FFmpeg would draw it as ANSI art)",
                    fix="pass a movie file (MOV, MP4, MKV, MXF...) or an image-sequence pattern such as shot.####.exr")
            self._vs = pick_video_stream(self._container, self.path)
            self._vs.codec_context.thread_type = "AUTO"  # frame + slice threads; seeking flushes them
            if planned is not None and planned.frame_table is not None:
                self._adopt(planned)
            else:
                table, notes = build_frame_table(self._container, self._vs, self.path, self.policy)
                self._notes.extend(notes)
                self._use(table)
                self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    # ------------------------------------------------------------ frame table

    def _use(self, table: FrameTable) -> None:
        self.table = table
        # The plan's sequence itself, no pts -> index dict (copying and hashing every pts cost a
        # render task 5 ms per 43k frames; issue 11 item 9): _locate bisects the sorted pts.
        self._pts = table.pts if isinstance(table.pts, tuple) else tuple(table.pts)
        self._key_index = list(table.keys)
        self._drops = frozenset(table.drops)
        self._key_stamp = dict(zip(table.keys, table.key_stamps))
        # MPEG-4 Part 2 in AVI: pictures placed by their decode order (avi_order), so
        # B-frames a damaged anchor takes with it leave gaps instead of shifting numbers
        self._order = (DecodeOrder(table.drops, header=self._vs.codec_context.extradata or b"")
                       if table.by_count and self._vs.codec_context.name == "mpeg4" else None)
        self._chunk = 0  # stamp of the next packet demuxed (its chunk index), with _order
        self._ahead: dict = {}  # with _order: pictures decoded before the one asked for (index -> frame)

    def _adopt(self, planned: SourceInfo) -> None:
        """Take the plan's table; refuse a file that changed since it was probed."""
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns) != (planned.size_bytes, planned.mtime_ns):
            raise InputError(f"{self.path} changed since the render was planned "
                             f"({planned.size_bytes} -> {st.st_size} bytes)",
                             fix="plan the render again (run the same command; add --overwrite to replace "
                                 "frames made from the old file)")
        self._use(planned.frame_table)
        self._colour = planned.colour
        self.info = planned

    # ------------------------------------------------------------ probe

    def _probe(self) -> SourceInfo:
        vs, ctx = self._vs, self._vs.codec_context
        time_base = Fraction(vs.time_base)
        exact = exact_rate(ctx.framerate, vs.average_rate or vs.guessed_rate, self._pts, time_base)
        if exact is not None:
            # Coarse clock: the plan, the writers and EXR headers get the exact
            # rate and its own clock (frame n at n/rate), never 19001/317.
            rate, vfr = exact, False
            out_tb = 1 / exact
            out_pts = tuple(round(Fraction(p) * time_base * exact) for p in self._pts)
            if len(set(out_pts)) != len(out_pts):  # cannot happen on a fitting grid; keep the clock
                out_tb, out_pts = time_base, tuple(self._pts)
        else:
            rate, vfr = rate_and_vfr((vs.average_rate, vs.base_rate, vs.guessed_rate), self._pts, time_base)
            out_tb, out_pts = time_base, tuple(self._pts)
        try:
            first = self.decoded(0)
        except BadFrame as exc:
            raise InputError(f"{self.path}: the first frame cannot be decoded ({exc.reason})",
                             fix=FIX_DAMAGED) from None
        self._pending = (0, first)  # the first read(first_frame) needs no seek
        self._colour = resolve_colour(first, ctx, first.height)
        audio = tuple(
            AudioStreamInfo(index=s.index, codec=s.codec_context.name,
                            sample_rate=s.codec_context.sample_rate or 0,
                            channels=s.codec_context.channels or 0)
            for s in self._container.streams.audio
        )
        st = os.stat(self.path)
        return SourceInfo(
            path=self.path,
            kind="movie",
            format=self._container.format.name,
            codec=ctx.name,
            width=first.width,
            height=first.height,
            pix_fmt=first.format.name,
            bit_depth=first.format.components[0].bits,
            rate=rate,
            time_base=out_tb,
            frame_numbers=tuple(range(self.first_frame, self.first_frame + len(self._pts))),
            pts=out_pts,
            vfr=vfr,
            colour=self._colour,
            rotation=int(round(first.rotation or 0)) % 360,
            timecode=timecode(self._container, vs),
            audio=audio,
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
            frame_table=self.table,
            notes=tuple(self._notes),
            # issue 11: non-square pixels (PAL/NTSC, HDV, anamorphic) and alpha (straight in video files)
            pixel_aspect=Fraction(vs.sample_aspect_ratio or ctx.sample_aspect_ratio or 1) or Fraction(1),
            alpha="straight" if frame_alpha(first) is not None else "",
            field_order=int(getattr(ctx, "field_order", 0) or 0),
            interlaced=int(getattr(ctx, "field_order", 0) or 0) > 1 or bool(first.interlaced_frame),
        )

    # ------------------------------------------------------------ reading

    def substitutions(self) -> dict[int, str]:
        return dict(self._subs)

    def note(self, text: str) -> None:
        """Add a note the plan says (``SourceInfo.notes``)."""
        self.info = dataclasses.replace(self.info, notes=self.info.notes + (text,))

    def read(self, numbers: Iterable[int]) -> Iterator[Frame]:
        """Yield :class:`Frame` s for ascending plate ``numbers``.

        ``Frame.rgb`` is (H, W, 3) float32 in coded orientation; ``pts`` and
        ``time_base`` are ``info``'s. Consecutive or near numbers decode
        forward; a jump past a key frame seeks. A frame without a picture
        raises (``policy.on_bad_frame`` error) or is held / black.
        """
        for number, index in checked_indices(numbers, self.info):
            rgb = self._rgb_at(index)
            yield Frame(number=number, index=index, rgb=rgb, pts=self.info.pts[index],
                        time_base=self.info.time_base, alpha=self._alpha)

    def _rgb_at(self, index: int) -> np.ndarray:
        number = self.first_frame + index
        self._alpha = None  # substituted frames are opaque
        try:
            av_frame = self.decoded(index)
        except BadFrame as exc:
            if self.policy.on_bad_frame == "error":
                raise InputError(f"{self.path}: frame {number} cannot be decoded ({exc.reason})",
                                 fix=_FIX_BAD) from None
            rgb = self._substitute(index)
            log.warning("%s: frame %d cannot be decoded (%s); %s", self.path, number, exc.reason,
                        "held from the nearest earlier frame" if self._subs[number] == "hold" else "black")
            return rgb
        rgb = self.to_rgb(av_frame, number)
        self._alpha = frame_alpha(av_frame)  # ProRes 4444 / yuva / rgba: the alpha plane, else None
        del av_frame  # release the decoder's buffer before the consumer runs
        self._last_good = (index, rgb)
        return rgb

    def to_rgb(self, av_frame, number: int) -> np.ndarray:
        try:
            return frame_to_rgb(av_frame, matrix=self._colour.matrix if is_ycbcr(av_frame.format) else None,
                                range=self._colour.range if is_ycbcr(av_frame.format) else None)
        except ValueError as exc:
            raise InputError(f"{self.path}: frame {number} has pixel format {av_frame.format.name} "
                             f"that cannot be converted ({exc})", fix="transcode the clip to ProRes") from exc

    def _substitute(self, index: int) -> np.ndarray:
        """The picture ``policy`` puts in place of bad frame ``index``. ``hold``
        takes the nearest earlier good frame of the *source* (decoded again if
        this reader has not just read it), so every chunking renders the same."""
        number = self.first_frame + index
        held = None
        if self.policy.on_bad_frame == "hold":
            if self._last_good is not None and self._last_good[0] == index - 1:
                held = self._last_good[1]
            else:
                for j in range(index - 1, -1, -1):
                    if self.first_frame + j in self._subs:
                        continue
                    try:
                        held = self.to_rgb(self.decoded(j), self.first_frame + j)
                        break
                    except BadFrame:
                        self._subs[self.first_frame + j] = "skipped while holding"
                self._decoder, self._pos = None, None  # continue from a fresh seek
        if held is None:
            self._subs[number] = "black" if self.policy.on_bad_frame == "black" else "black (nothing to hold)"
            return np.zeros((self.info.height, self.info.width, 3), np.float32)
        self._subs[number] = "hold"
        self._last_good = (index, held)
        return held.copy()

    def decoded(self, index: int):
        """The decoded ``av.VideoFrame`` at table position ``index`` (a drop frame: an
        empty AVI chunk or a not-coded VOP, the picture before it); raises
        :class:`BadFrame` when the decoder gives no picture for it."""
        while index in self._drops:
            index -= 1
        try:
            return self._picture(index)
        except BadFrame:
            if index and self._order is not None and self._order.not_coded(index):
                return self.decoded(index - 1)
            raise

    def _picture(self, index: int):
        if self._pending is not None:
            pending_index, frame = self._pending
            self._pending = None
            if pending_index == index:
                return frame
        # Decode forward when that is cheaper; else (or if forward decoding
        # overshoots) seek, falling back to earlier key frames.
        if self._ahead:
            frame = self._ahead.pop(index, None)
            for k in [k for k in self._ahead if k < index]:
                del self._ahead[k]
            if frame is not None:
                if frame.is_corrupt:
                    raise BadFrame(index, "the decoder reports a corrupt picture")
                return frame
        attempts = ([None] if self._can_continue(index) else []) + seek_points(self._key_index, index)
        overshoot = None
        ended = False
        for seek_index in attempts:
            if seek_index is not None:
                self._seek(seek_index)
            retry = True  # an overshoot on the first frame, or the end with no frame, is the seek's fault
            while True:
                frame = self._pull(index)
                if frame is None:  # end of stream before the target
                    ended = True
                    break
                if frame is _LOST:
                    if not self.table.by_count or self._pos is None or self._order is not None:
                        continue  # frames are placed by their pts: the gap shows by itself
                    self._pos = self._after(self._pos)  # the rejected packet's frame, in the count
                    if self._pos == index:
                        raise BadFrame(index, "the decoder rejected its packet: its data is damaged")
                    if self._pos > index:
                        break
                    continue
                at = self._locate(frame)
                if at is None and self._order is not None:
                    raise unplaceable(self.path, self.first_frame, len(self._pts),
                                      frame.pts if frame.pts is not None else self._chunk)
                self._pos = at
                if at is None or at < index:
                    retry = seek_index is None
                    continue
                if at == index:
                    if frame.is_corrupt:
                        raise BadFrame(index, "the decoder reports a corrupt picture")
                    return frame
                if self._order is not None and len(self._ahead) < _AHEAD:
                    # a lost anchor lets the B-pictures shown before it out ahead of the
                    # anchor they follow: keep them, the picture asked for may still come
                    self._ahead[at] = frame
                    continue
                overshoot = (at, frame)
                break
            if not retry:
                break
        if ended and overshoot is None:
            raise BadFrame(index, "the decoder returned no picture for it: the data is damaged or cut short")
        if overshoot is not None and self._decoder is not None:
            self._pending = overshoot  # the next frame is already decoded
        raise BadFrame(index, "the decoder skipped it: its data is damaged")

    def _after(self, pos: int) -> int:
        """The table index of the next picture the decoder gives (drop frames have none)."""
        return next(i for i in range(pos + 1, pos + 2 + len(self._drops)) if i not in self._drops)

    def _can_continue(self, index: int) -> bool:
        """Decode forward instead of seeking: the target is ahead and no key frame
        lies between the next frame and the target (same GOP, or just after)."""
        if self._decoder is None or self._pos is None or index <= self._pos:
            return False
        return key_at_or_before(self._key_index, index) <= self._pos + 1

    def _seek(self, key_index: int) -> None:
        # PyAV flushes the decoder on seek; a fresh decode generator follows it.
        if self.table.by_count:
            # Seek by the key frame's own stamp, so the demuxer lands on it and
            # counting starts there.
            stamp = self._key_stamp.get(key_index, self._pts[key_index] - self.table.seek_offset)
            self._container.seek(stamp, stream=self._vs, backward=True, any_frame=False)
            self._pos = key_index - 1
            self._chunk = key_index
            self._ahead.clear()
            if self._order is not None:
                self._order.reset()
        else:
            self._container.seek(self._pts[key_index] - self.table.seek_offset, stream=self._vs, backward=True,
                                 any_frame=False)
            self._pos = None
        self._decoder = self._frames()

    def _frames(self) -> Iterator:
        """Decoded frames, packet by packet; a packet the decoder rejects is skipped, as
        ``ffmpeg`` does (``policy`` decides about its frame), and ``_LOST`` comes in its
        place: tables that count frames (AVI) must count it."""
        for packet in self._container.demux(self._vs):
            if self._order is not None:  # stamped with its chunk index: the picture it codes carries it
                if packet.size:
                    self._order.see(self._chunk, bytes(packet))
                    packet.pts = packet.dts = self._chunk
                    self._chunk = self._after(self._chunk)
                else:
                    self._order.ended = True  # the flush: the last anchor comes out
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                log.debug("%s: packet at pts %s rejected by the decoder: %s", self.path, packet.pts, exc)
                yield _LOST
                continue
            yield from frames

    def _pull(self, index: int):
        if self._decoder is None:
            self._seek(0)
        try:
            return next(self._decoder)
        except StopIteration:
            self._decoder = None
            return None
        except av.FFmpegError as exc:  # the demuxer itself failed (the data ends mid-packet...)
            self._decoder = None
            raise BadFrame(index, f"reading failed: {exc}") from exc

    def _locate(self, frame) -> int | None:
        """Table index of a decoded frame: by count after the key frame sought (``by_count``), else
        by pts (within a tick: clocks round), else the one after the previous frame, else None."""
        if self.table.by_count:
            if self._order is not None:
                if frame.pts is None:
                    return None
                return self._order.display(frame.pts, low_delay=not self._vs.codec_context.has_b_frames,
                                           is_b=int(frame.pict_type) == _PICT_B)
            return None if self._pos is None else self._after(self._pos)
        t = frame.pts if frame.pts is not None else frame.dts
        if t is not None:
            hit = bisect.bisect_right(self._pts, t) - 1  # the last index with this pts, as the dict gave
            if hit >= 0 and self._pts[hit] == t:
                return hit
            i = bisect.bisect_left(self._pts, t)
            for j in (i - 1, i):
                if 0 <= j < len(self._pts) and abs(self._pts[j] - t) <= 1:
                    return j
        return None if self._pos is None else self._pos + 1

    def close(self) -> None:
        self._decoder, self._pending = None, None
        self._ahead.clear()
        self._container.close()
