"""The media contract: source and frame value types, readers and writers.

With :mod:`.engine` (what an engine does) and :mod:`.model` (what a model adapter
does), this is the half of the plugin contract that says *what* registered
objects must do (``hookspecs`` says *when* they are registered). Everything here
is plain data or an abstract base class; nothing imports torch or diffusers.

Pixel convention at every boundary: ``numpy.ndarray`` of shape ``(H, W, 3)``,
dtype ``float32``, RGB, non-linear display-referred values as decoded
(video R'G'B' in [0, 1]; scene-linear EXR values may exceed 1.0). Writers never
see device tensors; backends never touch files.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np


def fraction_str(value: Fraction | None) -> str | None:
    """``Fraction(24000, 1001)`` -> ``"24000/1001"`` (JSON-safe, exact)."""
    if value is None:
        return None
    return f"{value.numerator}/{value.denominator}"


# ----------------------------------------------------------------- media values


@dataclass(frozen=True)
class Colour:
    """Colour tags in FFmpeg's AVCOL_* numbering (1 = BT.709; range 1 = limited).

    ``assumed`` is True when the source carried no matrix and the reader chose
    one (BT.709 above 576 lines, BT.601 otherwise); the manifest records it.
    """

    primaries: int = 1
    trc: int = 1
    matrix: int = 1
    range: int = 1
    assumed: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int


ON_BAD_FRAME = ("error", "hold", "black")
MISSING_FRAMES = ("error", "black", "hold", "checkerboard")


@dataclass(frozen=True)
class ReadPolicy:
    """What a reader does with frames it cannot deliver (Nuke Read-node vocabulary).

    ``on_bad_frame`` (movies: a frame the decoder gives no picture for, or
    the frames a truncated file lost): ``error`` refuses naming the frame and
    the option; ``hold`` repeats the nearest earlier good frame; ``black``
    gives black. ``missing`` (sequences: holes in the numbering): ``error``,
    ``black``, ``hold`` or ``checkerboard``. Frame numbering stays the
    source's (except where fields become frames, below); readers list what
    they substituted (``Reader.substitutions``).
    """

    on_bad_frame: str = "error"
    missing: str = "error"
    #: movies with interlaced or telecined fields (``media.fields``): ``deinterlace`` auto | off |
    #: bwdif | yadif; ``field_rate`` frame | field (double rate); ``ivtc`` auto | off | on.
    deinterlace: str = "auto"
    field_rate: str = "frame"
    ivtc: str = "auto"


@dataclass(frozen=True)
class FrameTable:
    """Where every frame of a movie is, in the container's own clock.

    Built once when the source is probed (from the container index where the
    format has one -- MOV/MP4, AVI -- else one demux pass) and carried in the
    plan inside :class:`SourceInfo`, so readers in render tasks open, seek and
    decode only what they render. ``pts``: sorted presentation stamps of the
    frames in ``time_base``; ``keys``: those of key frames; ``by_count``:
    decoded frames are placed by their order after a key frame, not by
    timestamp (AVI has no presentation stamps; packed B-frames mislabel them).
    """

    time_base: Fraction
    pts: tuple[int, ...]
    keys: tuple[int, ...]
    by_count: bool = False
    built_from: str = "index"  # "index" | "scan"
    #: Subtract from a key's pts to get the stamp the demuxer seeks by: with ``by_count``
    #: the reorder delay; in MPEG program/transport streams (no index: the demuxer
    #: seeks by a binary search on decode stamps) the delay plus a margin, so the seek
    #: lands at or before the key frame and decoding runs forward to it.
    seek_offset: int = 0
    #: AVI drop frames: table indices of empty chunks (a capture's dropped frames), shown as
    #: the picture before them, as players and ffmpeg show them.
    drops: tuple[int, ...] = ()
    #: the stamp the demuxer seeks by for each of ``keys`` where ``seek_offset`` cannot say it.
    key_stamps: tuple[int, ...] = ()


@dataclass(frozen=True)
class SourceInfo:
    """What ``probe`` learns about an input, enough to plan a render.

    ``frame_numbers`` are plate numbers (movies: ``first_frame + index``;
    sequences: the numbers in the file names). ``pts`` holds one presentation
    timestamp per frame in ``time_base`` units, from the packet table, so VFR
    clips keep their timing; it is left out of ``to_dict`` (a hash goes in).
    """

    path: str
    kind: str  # "movie" | "sequence" | "image"
    format: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    rate: Fraction
    time_base: Fraction
    frame_numbers: tuple[int, ...]
    pts: tuple[int, ...] = ()
    vfr: bool = False
    colour: Colour = field(default_factory=Colour)
    rotation: int = 0
    timecode: str | None = None
    audio: tuple[AudioStreamInfo, ...] = ()
    missing: tuple[int, ...] = ()
    size_bytes: int = 0
    mtime_ns: int = 0
    #: movies: the reader's frame table (container clock); not in ``to_dict``.
    frame_table: FrameTable | None = field(default=None, compare=False, repr=False)
    #: what the reader noticed and the plan must say (truncation rendered anyway...).
    notes: tuple[str, ...] = ()
    #: sample (pixel) aspect ratio, width/height of one pixel (PAL 4:3 16:15,
    #: 2x anamorphic 2); display width = width * pixel_aspect.
    pixel_aspect: Fraction = Fraction(1)
    #: the source's alpha: "" (none), "premultiplied" or "straight" (as the format stores it).
    alpha: str = ""
    #: movies whose fields were made progressive (``media.fields.FieldPlan.spec``), else "";
    #: frames, rate, pts and timecode are then the delivered frames', not the coded ones'.
    fields: str = ""
    #: FFmpeg's AVFieldOrder of the coded stream (0 unknown, 1 progressive, 2-5 interlaced:
    #: ``media.fields``); ``interlaced``: that order or the first frame's own flag says so.
    field_order: int = 0
    interlaced: bool = False

    @property
    def frame_count(self) -> int:
        return len(self.frame_numbers)

    @property
    def first_frame(self) -> int:
        return self.frame_numbers[0]

    @property
    def last_frame(self) -> int:
        return self.frame_numbers[-1]

    @property
    def display_aspect(self) -> Fraction:
        """Width/height as shown: pixel aspect and rotation applied."""
        w, h = self.display_size
        par = Fraction(self.pixel_aspect or 1)
        return Fraction(w, h) * (1 / par if self.rotation % 180 else par)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the rotation the file asks for."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height

    def to_dict(self) -> dict:
        import hashlib

        d = {
            "path": self.path,
            "kind": self.kind,
            "format": self.format,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "rate": fraction_str(self.rate),
            "fps": float(self.rate),
            "time_base": fraction_str(self.time_base),
            "frame_count": self.frame_count,
            "first_frame": self.first_frame if self.frame_numbers else None,
            "last_frame": self.last_frame if self.frame_numbers else None,
            "vfr": self.vfr,
            "colour": self.colour.to_dict(),
            "rotation": self.rotation,
            "timecode": self.timecode,
            "audio": [asdict(a) for a in self.audio],
            "missing": list(self.missing),
            "size_bytes": self.size_bytes,
            "mtime_ns": self.mtime_ns,
        }
        if self.pixel_aspect != 1:  # only when set, so square-pixel digests stay as they were
            d["pixel_aspect"] = fraction_str(Fraction(self.pixel_aspect))
        if self.alpha:
            d["alpha"] = self.alpha
        if self.fields:
            d["fields"] = self.fields
        if self.interlaced:
            d["field_order"] = self.field_order
        if self.pts:
            d["pts_sha1"] = hashlib.sha1(",".join(map(str, self.pts)).encode()).hexdigest()
        return d


@dataclass
class Frame:
    """One decoded or rendered frame.

    ``rgb``: (H, W, 3) float32. ``number``: plate frame number. ``index``:
    0-based position in the source. ``pts``/``time_base``: source timing
    (None for image sequences).
    """

    number: int
    index: int
    rgb: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None
    #: (H, W) float32 coverage in [0, 1] when the source has alpha, else None.
    #: Backends never see it: the render driver carries it around the model.
    alpha: np.ndarray | None = None


# ----------------------------------------------------------------- media I/O


class Reader(abc.ABC):
    """An open input. Context manager; ``info`` is filled when opened.

    Registered through ``register_readers`` as a :class:`ReaderFactory`.
    """

    info: SourceInfo
    #: set by ``media.probe.open_input`` before the first ``read``.
    policy: ReadPolicy = ReadPolicy()

    @abc.abstractmethod
    def read(self, numbers: Iterable[int]) -> Iterator[Frame]:
        """Yield frames for plate ``numbers`` (ascending, each existing).

        Frame-accurate: seeks to the nearest earlier key frame and decodes
        forward. Streams: holds at most a few frames in memory.
        """

    def substitutions(self) -> dict[int, str]:
        """Plate number -> what was delivered instead of it ("hold", "black",
        "checkerboard") for the frames read so far under ``policy``."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class ReaderFactory:
    """A reader format. ``accepts(path) -> bool`` decides; ``open(path, first_frame)``
    returns a :class:`Reader`. ``kind`` is "movie" or "sequence".

    ``open_planned(path, first_frame, policy, planned)`` (optional) opens with
    a :class:`ReadPolicy` from the start (it can change what ``info`` says,
    e.g. a truncated movie rendered as far as it goes) and, in render tasks,
    with the :class:`SourceInfo` the plan probed, so nothing is read twice.
    Readers without it get ``policy`` set after ``open``."""

    name: str
    kind: str
    accepts: Callable[[str], bool]
    open: Callable[..., Reader]
    priority: int = 0
    open_planned: Callable[..., Reader] | None = None


@dataclass(frozen=True)
class OutputTarget:
    """Everything a writer needs, resolved by the plan.

    ``path`` is a movie file or a sequence pattern in printf form
    (``shot.%04d.exr``). ``frame_numbers`` are the plate numbers this writer
    will receive, in order (a chunk may be a sub-range of the source).
    ``options`` are codec options already validated by the writer's
    ``validate_options``. In OCIO colour mode ``colorspace`` is the OCIO name
    of the space the pixels are in and ``chromaticities`` its primaries and
    white (xR, yR, xG, yG, xB, yB, xW, yW; AP0/AP1 for ACES spaces), which
    take precedence over ``colour.primaries``.
    """

    path: str
    codec: str
    width: int
    height: int
    source: SourceInfo
    frame_numbers: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    colour: Colour = field(default_factory=Colour)
    #: the source's audio: True / "copy" (packet copy, PCM where the container cannot
    #: hold the codec), "pcm" (always transcoded), False / "none" (dropped): ``--audio``.
    audio: bool | str = True
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: pixel aspect the output declares (MOV 'pasp', VUI, EXR pixelAspectRatio).
    pixel_aspect: Fraction = Fraction(1)
    #: "" (no alpha), "premultiplied" or "straight": how ``Frame.alpha`` is written;
    #: frames arrive premultiplied, writers of straight alpha divide.
    alpha: str = ""
    colorspace: str = ""
    chromaticities: tuple[float, ...] | None = None


class Writer(abc.ABC):
    """An output in progress. Every file is written under a temporary name and
    renamed into place only when complete; ``abort`` removes temporaries."""

    @abc.abstractmethod
    def write(self, frame: Frame) -> None:
        """Append one frame (``frame.rgb`` at the target size)."""

    @abc.abstractmethod
    def close(self) -> list[str]:
        """Finish and publish; returns the final paths written."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Remove temporary files; never touches published files."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class WriterFactory:
    """An output format.

    ``codecs``: codec names it writes (e.g. ``prores_hq``, ``exr``).
    ``per_frame``: True for sequences (one file per frame, resumable per frame).
    ``suffixes``: file suffixes it accepts. ``validate_options(codec, options)``
    returns the normalised options or raises ``PlanError``. ``open(target)``
    returns a :class:`Writer`.
    """

    name: str
    codecs: tuple[str, ...]
    suffixes: tuple[str, ...]
    per_frame: bool
    open: Callable[[OutputTarget], Writer]
    validate_options: Callable[[str, Mapping[str, Any]], dict]
    describe: str = ""
