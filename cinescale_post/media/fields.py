"""Interlaced and telecined movies made progressive by FFmpeg's own filters.

Deinterlacing is ``bwdif`` (default) or ``yadif``; inverse telecine (3:2
pulldown, 23.976 film carried as 29.97i) is ``fieldmatch,decimate``. Both run
through PyAV's filter graph (MEDIA_IO.md addendum), frame-accurate for any
chunking: an output frame is computed in a fresh graph from exactly the
source frames its filter looks at, which gives what one run over the whole
clip gives (measured: identical planes to ``ffmpeg -vf bwdif`` and ``-vf
fieldmatch,decimate``):

* ``bwdif``/``yadif``: source frame i from frames i-1, i, i+1 (read forward,
  one live graph gives the same: ``field_reader``);
* ``fieldmatch,decimate``: the 4 output frames of cycle c (source frames
  5c..5c+4) from source frames 5c-5 .. 5c+5; a last cycle of r < 5 frames
  gives r frames (FFmpeg's count: 4 * (N // 5) + N % 5).

Field order: each decoded frame carries its own (from the bitstream), and the
filters read it there (``parity=auto``, FFmpeg's default); the stream-level
``AVFieldOrder`` is not trusted (a telecined ProRes written by FFmpeg says
"bt" for top-field-first frames, measured). PyAV does not expose the frame's
flag, so :func:`frame_field_order` asks FFmpeg: ``bwdif`` following the flag
gives the picture of the parity the flag names.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import av
import numpy as np

DEINTERLACE = ("auto", "off", "bwdif", "yadif")
FIELD_RATES = ("frame", "field")
IVTC = ("auto", "off", "on")
ORDER_WORDS = {"tff": "top field first", "bff": "bottom field first"}
#: repeated-field share (idet) above which an interlaced 29.97 stream is taken for 3:2 pulldown:
#: 2 of every 5 frames repeat a field (0.4); plain interlaced video repeats none
TELECINE_SHARE = 0.3
#: frames idet looks at to detect the cadence (12 pulldown cycles)
CADENCE_SAMPLE = 60
TELECINE_RATES = (Fraction(30000, 1001), Fraction(30))


@dataclass(frozen=True)
class FieldPlan:
    """What is done to a movie's fields. ``kind``: "deinterlace" | "ivtc";
    ``filter``: "bwdif" | "yadif" | "fieldmatch,decimate"; ``parity``: the
    first frame's field order, "tff" | "bff" (the filters follow every frame's
    own); ``per_field``: one output frame per field (double rate)."""

    kind: str
    filter: str
    parity: str = "auto"
    per_field: bool = False

    @property
    def spec(self) -> str:
        """The plan's and the manifest's record (``SourceInfo.fields``)."""
        return f"{self.kind}:{self.filter}:{self.parity}:{'field' if self.per_field else 'frame'}"

    @classmethod
    def parse(cls, spec: str) -> "FieldPlan":
        kind, filt, parity, rate = spec.split(":")
        return cls(kind, filt, parity, rate == "field")

    def describe(self) -> str:
        order = ORDER_WORDS.get(self.parity, "field order per frame")
        if self.kind == "ivtc":
            return f"inverse telecine ({self.filter}, {order}): 3:2 pulldown removed, film frames at 4/5 the rate"
        rate = "one frame per field (double rate)" if self.per_field else "one frame per frame"
        return f"deinterlaced with {self.filter} ({order}), {rate}"

    def chain(self) -> str:
        if self.kind == "ivtc":
            return "fieldmatch,decimate"
        mode = "send_field" if self.per_field else "send_frame"
        return f"{self.filter}=mode={mode}:parity=auto:deint=all"

    # --------------------------------------------------------------- windows

    def needs(self, out_index: int, n_source: int) -> tuple[range, int, int]:
        """Inverse telecine: (coded frames to push, outputs to skip, outputs to keep)
        for output frame ``out_index``'s 5-frame cycle (deinterlacing streams
        instead: ``field_reader.FieldReader._stream``)."""
        c = out_index // 4
        lo, hi = max(0, 5 * c - 5), min(n_source, 5 * c + 6)
        return range(lo, hi), 4 if c else 0, min(4, n_source - 5 * c)

    def group(self, out_index: int) -> tuple[int, int]:
        """(group, position in it) of an output frame."""
        per = 4 if self.kind == "ivtc" else (2 if self.per_field else 1)
        return divmod(out_index, per)

    def coded_rate(self, rate: Fraction) -> Fraction:
        """The coded stream's rate, from the delivered ``rate``."""
        if self.kind == "ivtc":
            return rate * Fraction(5, 4)
        return rate / 2 if self.per_field else rate

    def count(self, n_source: int) -> int:
        if self.kind == "ivtc":
            return 4 * (n_source // 5) + n_source % 5
        return n_source * (2 if self.per_field else 1)


def decide(policy, interlaced: bool, order: str | None, rate: Fraction,
           sample: Callable[[], Sequence[av.VideoFrame]], time_base: Fraction) -> tuple[FieldPlan | None, str]:
    """The plan for a movie (None: frames are used as coded) and a note on
    what was seen. ``policy``: ``ReadPolicy`` (deinterlace, field_rate, ivtc);
    ``interlaced``: the stream or its first frame says so; ``order``: the first
    frame's (:func:`frame_field_order`); ``sample()``: the first decoded frames,
    for the cadence check (called only for an interlaced 29.97 stream under
    ``ivtc = "auto"``)."""
    parity = order or "auto"
    words = ORDER_WORDS.get(order or "", "interlaced frames")
    if policy.ivtc == "on" or (policy.ivtc == "auto" and interlaced and policy.deinterlace == "auto"
                               and rate in TELECINE_RATES and repeated_share(sample(), time_base) >= TELECINE_SHARE):
        return FieldPlan("ivtc", "fieldmatch,decimate", parity), f"telecined ({words}, 3:2 cadence)"
    if policy.deinterlace == "off" or (policy.deinterlace == "auto" and not interlaced):
        return None, (f"interlaced ({words}); decoded as coded (input.deinterlace = \"off\")" if interlaced else "")
    filt = "bwdif" if policy.deinterlace == "auto" else policy.deinterlace
    return FieldPlan("deinterlace", filt, parity, policy.field_rate == "field"), f"interlaced ({words})"


def frame_field_order(frame: av.VideoFrame, time_base: Fraction) -> str | None:
    """"tff" | "bff" from a decoded frame's own flag; None for a progressive frame.
    PyAV does not expose the flag: ``bwdif`` with ``parity=auto`` (the flag)
    gives the picture of the parity it names (the frame twice, so that it is
    filtered at all). A picture both parities filter alike is called "tff"."""
    if not frame.interlaced_frame:
        return None

    def pic(parity):
        return _picture(run_chain(f"bwdif=mode=send_frame:parity={parity}:deint=all", [frame, frame],
                                  time_base, None)[0])

    auto = pic("auto")
    return "bff" if auto == pic("bff") and auto != pic("tff") else "tff"


def _picture(frame: av.VideoFrame) -> list[bytes]:
    """Each plane's samples without the line padding."""
    bpp = -(-frame.format.components[0].bits // 8)
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width * bpp].tobytes()
            for p in frame.planes]


def repeated_share(frames: Sequence[av.VideoFrame], time_base: Fraction) -> float:
    """Share of frames in which ``idet`` finds a field repeated from the frame before."""
    if len(frames) < 10:
        return 0.0
    out = run_chain("idet", frames, time_base, None)
    hits = sum(1 for f in out if f.metadata.get("lavfi.idet.repeated.current_frame", "neither") != "neither")
    return hits / max(1, len(out))


class Chain:
    """A live FFmpeg filter graph ``chain`` (``a=x,b=y``) fed frames like
    ``first`` (size, format) in ``time_base``: ``push`` returns what comes out."""

    def __init__(self, chain: str, first: av.VideoFrame, time_base: Fraction, rate: Fraction | None):
        self.graph = g = av.filter.Graph()
        # the pixel aspect is the reader's business (SourceInfo): these filters do not use it
        args = (f"video_size={first.width}x{first.height}:pix_fmt={first.format.name}:time_base={time_base}"
                ":pixel_aspect=1/1")
        if rate:
            args += f":frame_rate={Fraction(rate)}"
        node = g.add("buffer", args)
        for part in chain.split(","):
            name, _, opts = part.partition("=")
            nxt = g.add(name, opts or None)
            node.link_to(nxt)
            node = nxt
        sink = g.add("buffersink")
        node.link_to(sink)
        g.configure()

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Feed ``frame`` (None: the end, flushing the filters); the frames out."""
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return out


def run_chain(chain: str, frames: Sequence[av.VideoFrame], time_base: Fraction,
              rate: Fraction | None) -> list[av.VideoFrame]:
    """``frames`` through a fresh filter graph ``chain``, flushed: every output frame, in order."""
    c = Chain(chain, frames[0], time_base, rate)
    out = [o for f in frames for o in c.push(f)]
    return out + c.push(None)


__all__ = ["Chain", "DEINTERLACE", "FIELD_RATES", "FieldPlan", "IVTC", "ORDER_WORDS", "decide", "frame_field_order",
           "repeated_share", "run_chain"]
