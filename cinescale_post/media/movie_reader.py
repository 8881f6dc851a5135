"""Movie files in (MOV, MP4, MKV, MXF...; any codec PyAV decodes), frame-accurate.

What this reader guarantees, and why (measured in reference/MEDIA_IO.md):

* **Frame table from packets.** Opening demuxes the video stream once
  without decoding and sorts the packet pts: the frame count is exact for
  every container (MKV has no count in its header) and VFR timing is kept.
  Frame ``i`` has plate number ``first_frame + i``.
* **VFR** is flagged when a pts step differs from ``1/average_rate`` by more
  than one tick; the tolerance stops MKV's 1 ms clock (steps of 41/42 ms at
  23.976) from looking variable (section 2.4).
* **Random access** seeks to the key frame at or before the target and
  decodes forward until ``frame.pts >= target``; a naive seek returns the
  wrong frame on long-GOP B-frame clips. Ascending reads decode forward
  instead of re-seeking when no key frame lies between (section 2.4).
* **Exact colour.** Planar Y'CbCr frames are converted by our own matrix
  (``media.colour``), since swscale is ~0.4 % off at 10-bit and decodes
  untagged HD as BT.601. An untagged matrix is BT.709 above 576 lines, else
  BT.601 (``Colour.assumed``). RGB and gray frames are read from their planes
  too: swscale's float output is up to 33 codes off at 16-bit (measured here).
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
import logging
import os
import re
from fractions import Fraction
from typing import Iterable, Iterator

import av
import numpy as np

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import AudioStreamInfo, Colour, Frame, FrameTable, Reader, ReadPolicy, SourceInfo
import cinescale_post.media.colour as col
from cinescale_post.media.alpha import frame_alpha
from cinescale_post.media.avi_order import DecodeOrder

log = logging.getLogger(__name__)

_FIX_DAMAGED = "the file is damaged or incomplete; re-export it or copy it again"

# ---------------------------------------------------------------- pixels


# Packed RGB formats read without swscale: name -> (channel order, dtype).
_PACKED_RGB = {
    "rgb24": ("rgb", "u1"), "bgr24": ("bgr", "u1"),
    "rgba": ("rgba", "u1"), "bgra": ("bgra", "u1"), "argb": ("argb", "u1"), "abgr": ("abgr", "u1"),
    "rgb0": ("rgb0", "u1"), "bgr0": ("bgr0", "u1"), "0rgb": ("0rgb", "u1"), "0bgr": ("0bgr", "u1"),
    "rgb48le": ("rgb", "<u2"), "rgb48be": ("rgb", ">u2"), "bgr48le": ("bgr", "<u2"), "bgr48be": ("bgr", ">u2"),
    "rgba64le": ("rgba", "<u2"), "rgba64be": ("rgba", ">u2"),
    "bgra64le": ("bgra", "<u2"), "bgra64be": ("bgra", ">u2"),
}


def _plane_array(plane, dtype: str, width: int) -> np.ndarray:
    """(height, width) view of an FFmpeg plane, honouring its row stride.

    Rows are ``line_size`` bytes, padded for SIMD alignment, so the buffer is
    (height, line_size / itemsize); the padding is cut off here.
    """
    dt = np.dtype(dtype)
    rows = np.frombuffer(plane, dt, count=plane.height * (plane.line_size // dt.itemsize))
    return rows.reshape(plane.height, plane.line_size // dt.itemsize)[:, :width]


def _int_dtype(bits: int, big_endian: bool) -> str:
    return "u1" if bits <= 8 else (">u2" if big_endian else "<u2")


def is_ycbcr(fmt) -> bool:
    """True for Y'CbCr pixel formats (the matrix matters), False for RGB, gray, palette."""
    return not fmt.is_rgb and not fmt.has_palette and len(fmt.components) >= 3


def _subsampled_layout(fmt) -> str | None:
    """'444', '422', '420' (or None) for a Y'CbCr format, from its plane sizes."""
    luma, chroma = fmt.components[0], fmt.components[1]
    if chroma.width == luma.width and chroma.height == luma.height:
        return "444"
    if chroma.height == luma.height and chroma.width == -(-luma.width // 2):
        return "422"
    if chroma.height == -(-luma.height // 2) and chroma.width == -(-luma.width // 2):
        return "420"
    return None


def _ycbcr_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(Y', Cb, Cr, bits) code-value planes of a Y'CbCr frame, without swscale
    conversions that touch values (packed 4:2:2 is only repacked)."""
    fmt = frame.format
    comps = fmt.components
    bits = comps[0].bits
    planes = [c.plane for c in comps[:3]]
    dt = _int_dtype(bits, fmt.is_big_endian)
    if len(set(planes)) == 3:  # planar: yuv*p*, yuvj*p, yuva*p*
        y, cb, cr = (_plane_array(frame.planes[p], dt, c.width) for p, c in zip(planes, comps[:3]))
        return y, cb, cr, bits
    if planes[1] == planes[2] and planes[0] != planes[1]:  # semi-planar: nv12, p010 (hardware decoders)
        cw = comps[1].width
        y = _plane_array(frame.planes[0], dt, comps[0].width)
        uv = _plane_array(frame.planes[1], dt, 2 * cw).reshape(-1, cw, 2)
        if bits > 8 and bits < 16:  # P010/P012 keep the value in the high bits
            shift = 16 - bits
            y, uv = y >> shift, uv >> shift
        cb, cr = (uv[..., 1], uv[..., 0]) if fmt.name.startswith(("nv21", "nv42")) else (uv[..., 0], uv[..., 1])
        return y, cb, cr, bits
    # Packed (yuyv422, uyvy422, y210...): swscale repacks to planar of the
    # same depth and subsampling exactly (checked), then the planar path.
    layout = _subsampled_layout(fmt)
    if layout is None:
        raise ValueError(f"unsupported Y'CbCr layout {fmt.name}")
    depth = "" if bits <= 8 else ("10le" if bits <= 10 else "12le" if bits <= 12 else "16le")
    return _ycbcr_planes(frame.reformat(format=f"yuv{layout}p{depth}"))


def _rgb_planes(frame) -> np.ndarray | None:
    """(H, W, 3) float32 from an RGB or gray frame read directly, or None."""
    fmt = frame.format
    comps = fmt.components
    name = fmt.name
    if name in _PACKED_RGB:
        order, dt = _PACKED_RGB[name]
        nch = len(order)
        raw = _plane_array(frame.planes[0], dt, frame.width * nch).reshape(frame.height, frame.width, nch)
        rgb = raw[..., [order.index(c) for c in "rgb"]].astype(np.float32)
        return rgb / np.float32(255.0 if dt == "u1" else 65535.0)
    is_float = "f32" in name or "f16" in name
    if fmt.is_rgb and fmt.is_planar:  # gbrp*, gbrap*, gbrpf32*: components are R, G, B
        bits = comps[0].bits
        dt = (">" if fmt.is_big_endian else "<") + ("f4" if bits == 32 else "f2") if is_float \
            else _int_dtype(bits, fmt.is_big_endian)
        chans = [_plane_array(frame.planes[c.plane], dt, c.width) for c in comps[:3]]
        rgb = np.stack(chans, axis=-1).astype(np.float32)
        return rgb if is_float else rgb / np.float32((1 << bits) - 1)
    if not fmt.is_rgb and len(comps) in (1, 2) and not fmt.has_palette and fmt.is_planar:  # gray, ya
        c = comps[0]
        dt = ("<f4" if not fmt.is_big_endian else ">f4") if is_float else _int_dtype(c.bits, fmt.is_big_endian)
        v = _plane_array(frame.planes[c.plane], dt, c.width).astype(np.float32)
        if not is_float:
            v = v / np.float32((1 << c.bits) - 1)
        return np.repeat(v[..., None], 3, axis=-1)
    return None


def frame_to_rgb(frame, *, matrix: int | None = None, range: int | None = None) -> np.ndarray:
    """Decode an ``av.VideoFrame`` to (H, W, 3) float32 R'G'B' at full precision.

    Args:
        frame: any decoded video frame.
        matrix, range: AVCOL codes to use for Y'CbCr; None resolves them from
            the frame's tags (``colour.resolve_matrix`` / ``resolve_range``).
    Returns:
        float32 RGB; video values are not clipped (super-whites stay > 1.0).

    Y'CbCr goes through ``colour.ycbcr_to_rgb`` (exact); RGB/gray are read
    from their planes; anything else (palette...) through swscale rgb48le.
    """
    fmt = frame.format
    if is_ycbcr(fmt):
        tag = frame.colorspace
        if matrix is None:
            if tag not in (0, col.UNSPECIFIED) and not col.supported_matrix(tag):
                return _swscale_rgb(frame)  # YCgCo, ICtCp...: let FFmpeg do what it knows
            matrix = col.resolve_matrix(tag, frame.height)[0]
        if not col.supported_matrix(matrix):
            return _swscale_rgb(frame)
        if range is None:
            range = col.RANGE_FULL if fmt.name.startswith("yuvj") else col.resolve_range(frame.color_range)
        y, cb, cr, bits = _ycbcr_planes(frame)
        return col.ycbcr_to_rgb(y, cb, cr, matrix=matrix, range=range, bits=bits)
    rgb = _rgb_planes(frame)
    return rgb if rgb is not None else _swscale_rgb(frame)


def _swscale_rgb(frame) -> np.ndarray:
    # rgb48le, not gbrpf32le: swscale's float path is the less precise one.
    return frame.to_ndarray(format="rgb48le").astype(np.float32) / np.float32(65535.0)


# ---------------------------------------------------------------- opening

# Leading bytes of containers we recognise, to tell "truncated" from "not media".
_MAGIC = (
    (4, (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"), "QuickTime/MP4"),
    (0, (b"\x1a\x45\xdf\xa3",), "Matroska/WebM"),
    (0, (b"\x06\x0e\x2b\x34",), "MXF"),
    (0, (b"RIFF",), "AVI"),
)


# FFmpeg "decodes" text files as ANSI art; they are never footage.
_TEXT_FORMATS = {"tty"}


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
        return InputError(f"{path} is empty (0 bytes)", fix=_FIX_DAMAGED)
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


def _pick_video_stream(container, path: str):
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    if not len(container.streams):  # MOV/MP4 drop a video track that has no samples
        raise InputError(f"{path} has no frames (the container holds no streams)",
                         fix="the clip is empty; export it again with picture")
    raise InputError(f"{path} has no video stream",
                     fix="pass a file with picture; audio-only files cannot be upscaled")


def _declared_end(stream) -> Fraction | None:
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


def _timecode(container, vstream) -> str | None:
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


def _fits(rate: Fraction | None, deltas: np.ndarray, time_base: Fraction) -> bool:
    """Every pts step within one tick of the step of ``rate``."""
    if not rate:
        return False
    step = float(1 / (rate * time_base))
    return bool(np.all(np.abs(deltas - step) <= 1.0 + 1e-9))


def rate_and_vfr(stream_rates: tuple, pts: list[int], time_base: Fraction) -> tuple[Fraction, bool]:
    """(nominal rate, is VFR) from sorted pts.

    ``stream_rates`` = (average_rate, base_rate, guessed_rate). VFR when a step
    misses ``1/average_rate`` by more than one tick -- unless all steps agree
    with each other within a tick: MOV's average rate counts the last
    frame's duration, which some writers set oddly, and that is not VFR. For
    CFR the first of (base, guessed, average) that fits every step is
    reported, so MKV's millisecond clock still yields 24000/1001.
    """
    average, base, guessed = (Fraction(r) if r else None for r in stream_rates)
    deltas = np.diff(np.asarray(pts, dtype=np.int64))
    span = Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * time_base) if len(pts) > 1 and pts[-1] > pts[0] else None
    average = average or span
    if len(deltas) == 0:
        return (base or average or guessed or Fraction(24)), False
    if not _fits(average, deltas, time_base):
        if np.ptp(deltas) > 1:  # steps really differ
            return average, True
        average = span
    for rate in (base, guessed, average):
        if _fits(rate, deltas, time_base):
            return rate, False
    return average, False


#: Rates a coarse clock is snapped to (plus the codec's own, tried first).
STANDARD_RATES = tuple(Fraction(r) for r in (
    "24000/1001", "24", "25", "30000/1001", "30", "48000/1001", "48", "50", "60000/1001", "60",
    "120000/1001", "120", "100", "96", "72", "15", "12", "12000/1001", "15000/1001", "16", "18", "20",
    "240", "240000/1001"))


def _on_grid(rate: Fraction, pts: np.ndarray, time_base: Fraction) -> bool:
    """Every (sorted) pts within one tick of a frame grid at ``rate`` (any offset):
    the timestamps are that rate, rounded to the container's clock."""
    step = float(1 / (rate * time_base))
    resid = pts - np.arange(len(pts), dtype=np.float64) * step
    return bool(np.ptp(resid) <= 1.0 + 1e-6)


def exact_rate(codec_rate: Fraction | None, stream_rate: Fraction | None, pts: list[int],
               time_base: Fraction) -> Fraction | None:
    """The exact rate of a clip whose container clock is coarse, or None.

    The clock is coarse when the container's rate is not a standard one or a
    frame is not a whole number of ticks (MKV's 1 ms: 19001/317 for 59.94;
    AVI's 2997/125 for 23.976, 1000000/66667 for 15). Then the codec's own
    timing (``codec_context.framerate``: H.264/HEVC VUI, MPEG-4 VOL) is used
    if the timestamps sit on its grid within one tick, else the standard rate
    nearest the timestamps' span that they fit. None: the clock is exact, or
    nothing fits (VFR; ``rate_and_vfr`` decides).
    """
    if stream_rate:
        ticks = 1 / (Fraction(stream_rate) * time_base)
        if Fraction(stream_rate) in STANDARD_RATES and ticks.denominator == 1:
            return None
    arr = np.asarray(pts, dtype=np.float64)
    if len(arr) < 2:
        return Fraction(codec_rate) if codec_rate and Fraction(codec_rate) in STANDARD_RATES else None
    span = Fraction(len(arr) - 1) / (Fraction(int(arr[-1] - arr[0])) * time_base) if arr[-1] > arr[0] else None
    codec = Fraction(codec_rate) if codec_rate else None
    # The codec's rate first when it is a standard one (VUI says 60000/1001);
    # a codec clock copied from the container (AVI's 2997/125) only last.
    candidates = [codec] if codec in STANDARD_RATES else []
    if span:
        candidates += sorted(STANDARD_RATES, key=lambda r: abs(r - span))
    if codec and codec not in STANDARD_RATES:
        candidates.append(codec)
    for rate in candidates:
        if rate > 0 and _on_grid(rate, arr, time_base):
            return rate
    return None


def _resolve_colour(frame, ctx, height: int) -> Colour:
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


# Containers whose demuxer builds a complete sample index at open (MOV/MP4:
# the moov tables; AVI: idx1), so the frame table needs no pass over the data.
_INDEXED = {"mov", "mp4", "avi"}
# Packets probed at open to learn the pts-dts offset of an indexed stream.
_HEAD_PACKETS = 64
_FIX_BAD = ("--on-bad-frame hold repeats the nearest earlier good frame, --on-bad-frame black puts black "
            "in its place (both recorded in the manifest); or re-export the clip")


#: what ``MovieReader._frames`` yields in place of a packet the decoder rejected
_LOST = object()
_PICT_B = 3  # AVPictureType AV_PICTURE_TYPE_B (PyAV's frame.pict_type)
_AHEAD = 8  # pictures kept while waiting for one the decoder gives out of order (B-frame runs + threads)


class _BadFrame(Exception):
    """Internal: the frame at ``index`` has no picture (the reason says why)."""

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
            if self._container.format.name in _TEXT_FORMATS:
                raise InputError(
                    f"{self.path} is not a media file FFmpeg can read (it is text; FFmpeg would draw it as ANSI art)",
                    fix="pass a movie file (MOV, MP4, MKV, MXF...) or an image-sequence pattern such as shot.####.exr")
            self._vs = _pick_video_stream(self._container, self.path)
            self._vs.codec_context.thread_type = "AUTO"  # frame + slice threads; seeking flushes them
            if planned is not None and planned.frame_table is not None:
                self._adopt(planned)
            else:
                self._use(self._build_table())
                self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    # ------------------------------------------------------------ frame table

    def _use(self, table: FrameTable) -> None:
        self.table = table
        # The plan's sequence itself, and no pts -> index dict: a render task opening a
        # long clip copied and hashed every pts (5 ms per 43k frames; issue 11 item 9).
        # _locate bisects instead (pts are sorted).
        self._pts = table.pts if isinstance(table.pts, tuple) else tuple(table.pts)
        self._key_index = list(table.keys)
        # MPEG-4 Part 2 in AVI: pictures placed by their decode order (avi_order), so
        # B-frames a damaged anchor takes with it leave gaps instead of shifting numbers
        self._order = DecodeOrder() if table.by_count and self._vs.codec_context.name == "mpeg4" else None
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

    def _build_table(self) -> FrameTable:
        fmt_names = set(self._container.format.name.split(","))
        table = self._table_from_index() if fmt_names & _INDEXED else None
        return table or self._table_from_scan()

    def _by_count(self) -> bool:
        # AVI stores no presentation times: what the demuxer calls pts is a
        # parser's guess, and packed B-frames (DivX/Xvid) come out of the
        # decoder labelled out of order. The decoder's output order is right.
        return "avi" in self._container.format.name.split(",")

    def _table_from_index(self) -> FrameTable | None:
        """Frame table from the demuxer's sample index (no pass over the data).

        Index stamps are decode times; presentation times are decode times
        plus the stream's reorder offset, learnt from the first packets, when
        the decode steps are uniform (CFR) or nothing is reordered. Anything
        else (VFR with B-frames, an incomplete index) returns None: a scan.
        """
        vs = self._vs
        entries = [e for e in vs.index_entries if not e.is_discard]
        if len(entries) < 2 or (vs.frames and len(entries) < vs.frames):
            return None
        dts = np.fromiter((e.timestamp for e in entries), dtype=np.int64, count=len(entries))
        if np.any(np.diff(dts) <= 0):
            return None
        head_pts, head_dts = [], []
        for packet in self._container.demux(vs):
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
        self._container.seek(pts[0], stream=vs, backward=True, any_frame=False)
        by_count = self._by_count()
        return FrameTable(Fraction(vs.time_base), pts, keys, by_count=by_count, built_from="index",
                          seek_offset=shift if by_count else 0)

    def _table_from_scan(self) -> FrameTable:
        """Sorted pts of every video packet (one demux pass, no decoding)."""
        vs = self._vs
        pts, keys, listed, head = [], [], 0, []
        try:
            self._container.seek(0, stream=vs, backward=True, any_frame=True)  # after a look at the index
        except av.FFmpegError:
            pass  # nothing to seek in (an empty file): the scan below says so
        try:
            for packet in self._container.demux(vs):
                if packet.size == 0 and packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                listed += 1
                if packet.is_discard:  # cut by an edit list: never shown
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    continue
                pts.append(t)
                if len(head) < _HEAD_PACKETS and packet.dts is not None:
                    head.append(t - packet.dts)
                if packet.is_keyframe:
                    keys.append(t)
        except av.FFmpegError as exc:
            if not pts:
                raise InputError(f"{self.path} cannot be read: {exc}", fix=_FIX_DAMAGED) from exc
            self._truncated(None, len(pts), f"reading stopped ({exc}) after")
        if not pts:
            raise InputError(f"{self.path} has no video frames",
                             fix="the clip is empty; export it again with picture")
        if vs.frames and listed < vs.frames:
            self._truncated(vs.frames, listed, "its index lists")
        pts.sort()
        if not vs.frames:  # MKV, MXF...: no count, so compare with the declared duration
            self._check_duration(pts)
        index_of = {t: i for i, t in enumerate(pts)}
        key_index = tuple(sorted(index_of[k] for k in set(keys) if k in index_of)) or (0,)
        self._container.seek(pts[0], stream=vs, backward=True, any_frame=False)
        by_count = self._by_count()
        return FrameTable(Fraction(vs.time_base), tuple(pts), key_index, by_count=by_count, built_from="scan",
                          seek_offset=max(head, default=0) if by_count else 0)

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
        self._notes.append(f"{message}; rendering the {present} frames present "
                           f"(--on-bad-frame {self.policy.on_bad_frame})")

    def _check_duration(self, pts: list[int]) -> None:
        declared = _declared_end(self._vs)
        if declared is None:
            return
        tb = Fraction(self._vs.time_base)
        if len(pts) > 1:
            longest = max(b - a for a, b in zip(pts, pts[1:])) * tb
        else:
            longest = 1 / Fraction(self._vs.average_rate or self._vs.guessed_rate or 24)
        present = pts[-1] * tb + longest
        # More than two of the longest frames absent: data was cut off (a
        # copy stopped early). Smaller differences are container rounding.
        if declared - present > 2 * longest:
            self._truncated(None, len(pts), f"it declares {float(declared):.3f} s of video but the data "
                                            f"ends at {float(present):.3f} s:")

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
            first = self._decode_index(0)
        except _BadFrame as exc:
            raise InputError(f"{self.path}: the first frame cannot be decoded ({exc.reason})",
                             fix=_FIX_DAMAGED) from None
        self._pending = (0, first)  # the first read(first_frame) needs no seek
        self._colour = _resolve_colour(first, ctx, first.height)
        if getattr(ctx, "field_order", 1) not in (0, 1):
            log.warning("%s is interlaced (field order %s); frames are decoded as coded",
                        self.path, ctx.field_order)
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
            timecode=_timecode(self._container, vs),
            audio=audio,
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
            frame_table=self.table,
            notes=tuple(self._notes),
            # issue 11: non-square pixels (PAL/NTSC, HDV, anamorphic) and alpha (straight in video files)
            pixel_aspect=Fraction(vs.sample_aspect_ratio or ctx.sample_aspect_ratio or 1) or Fraction(1),
            alpha="straight" if frame_alpha(first) is not None else "",
        )

    # ------------------------------------------------------------ reading

    def substitutions(self) -> dict[int, str]:
        return dict(self._subs)

    def read(self, numbers: Iterable[int]) -> Iterator[Frame]:
        """Yield :class:`Frame` s for ascending plate ``numbers``.

        ``Frame.rgb`` is (H, W, 3) float32 in coded orientation; ``pts`` and
        ``time_base`` are ``info``'s. Consecutive or near numbers decode
        forward; a jump past a key frame seeks. A frame without a picture
        raises (``policy.on_bad_frame`` error) or is held / black.
        """
        last = None
        for number in numbers:
            index = number - self.first_frame
            if not 0 <= index < len(self._pts):
                raise InputError(
                    f"frame {number} is not in {self.path} (frames {self.info.first_frame}-{self.info.last_frame})",
                    fix="choose frames inside the clip's range (see `cinescale probe`)")
            if last is not None and number <= last:
                raise ValueError(f"read() takes ascending frame numbers; {number} came after {last}")
            last = number
            rgb = self._rgb_at(index)
            yield Frame(number=number, index=index, rgb=rgb, pts=self.info.pts[index],
                        time_base=self.info.time_base, alpha=self._alpha)

    def _rgb_at(self, index: int) -> np.ndarray:
        number = self.first_frame + index
        self._alpha = None  # substituted frames are opaque
        try:
            av_frame = self._decode_index(index)
        except _BadFrame as exc:
            if self.policy.on_bad_frame == "error":
                raise InputError(f"{self.path}: frame {number} cannot be decoded ({exc.reason})",
                                 fix=_FIX_BAD) from None
            rgb = self._substitute(index)
            log.warning("%s: frame %d cannot be decoded (%s); %s", self.path, number, exc.reason,
                        "held from the nearest earlier frame" if self._subs[number] == "hold" else "black")
            return rgb
        rgb = self._to_rgb(av_frame, number)
        self._alpha = frame_alpha(av_frame)  # ProRes 4444 / yuva / rgba: the alpha plane, else None
        del av_frame  # release the decoder's buffer before the consumer runs
        self._last_good = (index, rgb)
        return rgb

    def _to_rgb(self, av_frame, number: int) -> np.ndarray:
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
                        held = self._to_rgb(self._decode_index(j), self.first_frame + j)
                        break
                    except _BadFrame:
                        self._subs[self.first_frame + j] = "skipped while holding"
                self._decoder, self._pos = None, None  # continue from a fresh seek
        if held is None:
            self._subs[number] = "black" if self.policy.on_bad_frame == "black" else "black (nothing to hold)"
            return np.zeros((self.info.height, self.info.width, 3), np.float32)
        self._subs[number] = "hold"
        self._last_good = (index, held)
        return held.copy()

    def _decode_index(self, index: int):
        """The decoded ``av.VideoFrame`` at table position ``index``; raises
        :class:`_BadFrame` when the decoder gives no picture for it."""
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
                    raise _BadFrame(index, "the decoder reports a corrupt picture")
                return frame
        attempts = ([None] if self._can_continue(index) else []) + self._seek_points(index)
        overshoot = None
        for seek_index in attempts:
            if seek_index is not None:
                self._seek(seek_index)
            retry = True  # an overshoot on the first frame is the seek's fault
            while True:
                frame = self._pull(index)
                if frame is None:  # end of stream before the target
                    raise _BadFrame(index, "the decoder returned no picture for it: the data is damaged "
                                           "or cut short")
                if frame is _LOST:
                    if not self.table.by_count or self._pos is None or self._order is not None:
                        continue  # frames are placed by their pts: the gap shows by itself
                    self._pos += 1  # the rejected packet's frame, in the count
                    if self._pos == index:
                        raise _BadFrame(index, "the decoder rejected its packet: its data is damaged")
                    if self._pos > index:
                        break
                    continue
                at = self._locate(frame)
                if at is None and self._order is not None:
                    self._unplaceable(frame)
                self._pos = at
                if at is None or at < index:
                    retry = seek_index is None
                    continue
                if at == index:
                    if frame.is_corrupt:
                        raise _BadFrame(index, "the decoder reports a corrupt picture")
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
        if overshoot is not None and self._decoder is not None:
            self._pending = overshoot  # the next frame is already decoded
        raise _BadFrame(index, "the decoder skipped it: its data is damaged")

    def _key_at_or_before(self, index: int) -> int:
        k = bisect.bisect_right(self._key_index, index) - 1
        return self._key_index[k] if k >= 0 else 0

    def _can_continue(self, index: int) -> bool:
        """Decode forward instead of seeking: the target is ahead and no key frame
        lies between the next frame and the target (same GOP, or just after)."""
        if self._decoder is None or self._pos is None or index <= self._pos:
            return False
        return self._key_at_or_before(index) <= self._pos + 1

    def _seek_points(self, index: int) -> list[int]:
        """Table indices to seek to for ``index``: its key frame, then the one
        before (an open GOP's leading frames need it), then the start."""
        key = self._key_at_or_before(index)
        points = [key]
        k = bisect.bisect_left(self._key_index, key)
        if k >= 1:
            points.append(self._key_index[k - 1])
        points.append(0)
        return list(dict.fromkeys(points))

    def _seek(self, key_index: int) -> None:
        # PyAV flushes the decoder on seek; a fresh decode generator follows it.
        if self.table.by_count:
            # Seek by the key frame's own stamp, so the demuxer lands on it and
            # counting starts there.
            stamp = self._pts[key_index] - self.table.seek_offset
            self._container.seek(stamp, stream=self._vs, backward=True, any_frame=False)
            self._pos = key_index - 1
            self._chunk = key_index
            self._ahead.clear()
            if self._order is not None:
                self._order.reset()
        else:
            self._container.seek(self._pts[key_index], stream=self._vs, backward=True, any_frame=False)
            self._pos = None
        self._decoder = self._frames()

    def _frames(self) -> Iterator:
        """Decoded frames, packet by packet. A packet the decoder rejects is
        skipped, as the ``ffmpeg`` command line does: one damaged frame must
        not end the clip (its frame is then missing and ``policy`` decides).
        In its place comes ``_LOST``: tables that count frames (AVI) must
        count it, or every later frame would take its predecessor's number."""
        for packet in self._container.demux(self._vs):
            if self._order is not None:  # stamped with its chunk index: the picture it codes carries it
                if packet.size:
                    self._order.see(self._chunk, bytes(packet))
                    packet.pts = packet.dts = self._chunk
                    self._chunk += 1
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
            raise _BadFrame(index, f"reading failed: {exc}") from exc

    def _locate(self, frame) -> int | None:
        """Table index of a decoded frame: by count after the key frame sought
        (``by_count`` tables), else by pts (within one tick, for clocks that
        round), else the one after the previous frame, else unknown."""
        if self.table.by_count:
            if self._order is not None:
                if frame.pts is None:
                    return None
                return self._order.display(frame.pts, low_delay=not self._vs.codec_context.has_b_frames,
                                           is_b=int(frame.pict_type) == _PICT_B)
            return None if self._pos is None else self._pos + 1
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

    def _unplaceable(self, frame) -> None:
        """A picture whose place the decode order cannot tell (a VOP header
        near it is damaged): refuse rather than guess a number."""
        stamp = frame.pts if frame.pts is not None else self._chunk
        lo = self.first_frame + max(0, stamp - 2)
        hi = self.first_frame + min(len(self._pts) - 1, stamp + 2)
        raise InputError(f"{self.path}: frames {lo}-{hi} cannot be placed: a damaged MPEG-4 picture header there "
                         "hides which picture the decoder gives for which frame (B-frames reorder them)",
                         fix="re-export the clip from its original, or copy it again (--on-bad-frame hold/black "
                             "cannot help here: they fill frames whose place is known, and this one is not)")

    def close(self) -> None:
        self._decoder = None
        self._ahead.clear()
        self._pending = None
        self._container.close()
