"""Image sequences in (EXR, PNG, TIFF, DPX), and single images.

* Patterns are parsed by ``media.sequence.parse_pattern`` (``####`` = four
  digits, ``%04d``, ``@@@@``, ``$F4``); the frame numbers are the numbers in
  the file names (``SeqPattern.scan``), so ``first_frame`` does not apply.
  Version numbers such as ``_v001`` are never frames.
* Gaps are reported in ``SourceInfo.missing`` when the sequence is opened;
  reading a missing frame raises :class:`InputError` naming it, unless
  ``policy.missing`` (``--missing``, Nuke's Read-node vocabulary) is
  ``black``, ``hold`` (the nearest earlier frame on disk) or ``checkerboard``:
  then ``frame_numbers`` run from the first to the last number, holes
  included, so numbering stays the source's, and ``substitutions()`` lists
  what was put in their place. ``policy.on_bad_frame`` hold/black does the
  same for a file that exists but cannot be decoded.
* Decoders: EXR through the ``OpenEXR`` module (never OpenCV: some builds
  lack EXR, others write broken DWA files -- MEDIA_IO.md section 4.3), PNG
  and TIFF through OpenCV (8/16-bit and float TIFF), DPX and anything else
  through PyAV, converted exactly (``frame_rgb.frame_to_rgb``).
* Values: ``(H, W, 3)`` float32; integers are scaled to [0, 1] by their full
  code range; EXR values are kept as stored (scene-linear, may exceed 1.0).
* Rate: the first EXR's ``framesPerSecond`` when present, else
  :data:`DEFAULT_RATE` (24). The plan may override it.
* Colour: EXR is scene-linear (trc 8) with primaries from ``chromaticities``
  (BT.709 assumed when absent; codes 2 for primaries our table does not name,
  e.g. ACES); PNG/TIFF are assumed sRGB (primaries 1, trc 13); DPX takes the
  file's tags, or BT.709 primaries and an unspecified transfer. RGB sources
  carry matrix 0 and full range.
"""

from __future__ import annotations

import bisect
import os
import re
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.media import Colour, Frame, Reader, ReadPolicy, SourceInfo
import cinescale_post.media.colour as col
from cinescale_post.media.sequence import SeqPattern, compress_ranges, missing_frames, parse_pattern

DEFAULT_RATE = Fraction(24)

_FIX_DAMAGED = "the frame is damaged or incomplete; render or copy it again"
_SINGLE_NUMBER = re.compile(r"\.(-?\d+)\.[^.]+$")  # the last digit group between dots


def image_number(path: str) -> int:
    """Frame number of a single image: ``sh010_v001.1001.exr`` -> 1001; else 1."""
    m = _SINGLE_NUMBER.search(os.path.basename(path))
    return int(m.group(1)) if m else 1


# ---------------------------------------------------------------- decoders


class _Image:
    """One decoded file: ``rgb`` (H, W, 3) float32 plus what probe reports."""

    __slots__ = ("rgb", "pix_fmt", "bit_depth", "codec", "rate", "timecode", "colour", "alpha", "alpha_mode",
                 "pixel_aspect")

    def __init__(self, rgb, pix_fmt, bit_depth, codec, colour, rate=None, timecode=None, alpha=None,
                 alpha_mode="", pixel_aspect=1.0):
        self.rgb, self.pix_fmt, self.bit_depth, self.codec = rgb, pix_fmt, bit_depth, codec
        self.colour, self.rate, self.timecode = colour, rate, timecode
        # issue 11: (H, W) alpha or None; "premultiplied" (EXR) / "straight" (PNG, TIFF); EXR pixelAspectRatio
        self.alpha, self.alpha_mode, self.pixel_aspect = alpha, alpha_mode, pixel_aspect


def _primaries_from_chromaticities(chroma) -> int:
    for code, ref in col.CHROMATICITIES.items():
        if np.allclose(np.asarray(chroma, dtype=np.float64), ref, atol=1e-3):
            return code
    return col.UNSPECIFIED


def _exr_timecode(tc) -> str | None:
    try:
        sep = ";" if tc.dropFrame else ":"
        return f"{tc.hours:02d}:{tc.minutes:02d}:{tc.seconds:02d}{sep}{tc.frame:02d}"
    except AttributeError:
        return None


def _read_exr(path: str) -> _Image:
    """First part of an EXR: RGB(A), or separate R, G, B, or luminance Y."""
    import OpenEXR

    with OpenEXR.File(path) as f:
        header = f.header()
        channels = f.channels()
        if "RGB" in channels or "RGBA" in channels:
            pixels = channels["RGB" if "RGB" in channels else "RGBA"].pixels  # alpha kept as channel 4
        elif all(c in channels for c in "RGB"):
            pixels = np.stack([channels[c].pixels for c in ("R", "G", "B", "A") if c in channels], axis=-1)
        elif "Y" in channels:
            pixels = np.repeat(channels["Y"].pixels[..., None], 3, axis=-1)
        else:
            raise InputError(f"{path} has no R, G, B or Y channels (it has {', '.join(sorted(channels))})",
                             fix="write the plate with RGB channels in the first part")
        dtype = pixels.dtype
        rgba = _place_in_display_window(pixels.astype(np.float32), header)
        rgb = np.ascontiguousarray(rgba[..., :3])
        alpha = np.ascontiguousarray(rgba[..., 3]) if rgba.shape[2] == 4 else None
        par = float(header.get("pixelAspectRatio") or 1.0)
        rate = header.get("framesPerSecond")
        timecode = _exr_timecode(header["timeCode"]) if "timeCode" in header else None
        chroma = header.get("chromaticities")
    primaries = _primaries_from_chromaticities(chroma) if chroma is not None else 1
    colour = Colour(primaries=primaries, trc=8, matrix=0, range=col.RANGE_FULL, assumed=chroma is None)
    half = dtype == np.float16
    return _Image(rgb, "gbrpf16le" if half else "gbrpf32le", 16 if half else 32, "exr", colour,
                  rate=Fraction(rate) if rate else None, timecode=timecode, alpha=alpha,
                  alpha_mode="premultiplied" if alpha is not None else "", pixel_aspect=par)


def _place_in_display_window(pixels: np.ndarray, header: dict) -> np.ndarray:
    """Pixels of the data window, placed in the display window (Nuke writes
    bounding-box data windows; the image size is the display window)."""
    (dx0, dy0), (dx1, dy1) = (tuple(int(v) for v in p) for p in header["dataWindow"])
    (wx0, wy0), (wx1, wy1) = (tuple(int(v) for v in p) for p in header.get("displayWindow", header["dataWindow"]))
    if (dx0, dy0, dx1, dy1) == (wx0, wy0, wx1, wy1):
        return pixels
    out = np.zeros((wy1 - wy0 + 1, wx1 - wx0 + 1, pixels.shape[2]), np.float32)  # outside: transparent
    # overlap of the two windows, in display coordinates
    x0, y0, x1, y1 = max(dx0, wx0), max(dy0, wy0), min(dx1, wx1), min(dy1, wy1)
    if x0 <= x1 and y0 <= y1:
        out[y0 - wy0:y1 - wy0 + 1, x0 - wx0:x1 - wx0 + 1] = pixels[y0 - dy0:y1 - dy0 + 1, x0 - dx0:x1 - dx0 + 1]
    return out


def _read_cv2(path: str) -> _Image:
    """PNG / TIFF / JPEG through OpenCV: BGR(A) -> RGB, integers scaled to [0, 1]."""
    import cv2

    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError("OpenCV could not decode it")
    if data.ndim == 2:
        data = data[..., None]
    alpha = None
    if data.shape[2] in (2, 4):  # gray+alpha, BGRA: straight alpha (PNG requires it)
        top = 255.0 if data.dtype == np.uint8 else 65535.0 if data.dtype == np.uint16 else 1.0
        alpha = np.ascontiguousarray(data[..., -1].astype(np.float32) / np.float32(top))
    if data.shape[2] >= 3:
        data = data[..., 2::-1]  # BGR(A) -> RGB, alpha dropped
    else:
        data = np.repeat(data[..., :1], 3, axis=-1)  # gray (+ alpha)
    if data.dtype == np.uint8:
        rgb, bits, pix = data.astype(np.float32) / np.float32(255.0), 8, "rgb24"
    elif data.dtype == np.uint16:
        rgb, bits, pix = data.astype(np.float32) / np.float32(65535.0), 16, "rgb48le"
    elif data.dtype in (np.float32, np.float16):
        rgb, bits, pix = data.astype(np.float32), 32 if data.dtype == np.float32 else 16, "gbrpf32le"
    else:
        raise ValueError(f"unsupported sample type {data.dtype}")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    codec = {"tif": "tiff", "jpg": "jpeg"}.get(ext, ext)
    colour = Colour(primaries=1, trc=13, matrix=0, range=col.RANGE_FULL, assumed=True)
    return _Image(np.ascontiguousarray(rgb), pix, bits, codec, colour, alpha=alpha,
                  alpha_mode="straight" if alpha is not None else "")


def _read_av(path: str) -> _Image:
    """DPX (and other single images FFmpeg reads) through PyAV."""
    import av

    from cinescale_post.media.frame_rgb import frame_to_rgb, is_ycbcr

    with av.open(path) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream), None)
        if frame is None:
            raise ValueError("no picture in the file")
        rgb = frame_to_rgb(frame)
        if is_ycbcr(frame.format):
            matrix, assumed = col.resolve_matrix(frame.colorspace, frame.height)
            rng = col.RANGE_FULL if frame.format.name.startswith("yuvj") else col.resolve_range(frame.color_range)
        else:
            matrix, rng, assumed = 0, col.RANGE_FULL, False
        prim = frame.color_primaries if frame.color_primaries not in (0, col.UNSPECIFIED) else None
        colour = Colour(primaries=prim or 1, trc=frame.color_trc or col.UNSPECIFIED, matrix=matrix,
                        range=rng, assumed=assumed or prim is None)
        return _Image(rgb, frame.format.name, frame.format.components[0].bits, stream.codec_context.name, colour)


def read_image(path: str) -> _Image:
    """Decode one image file by its suffix (EXR, PNG/TIFF/JPEG, else PyAV)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".exr":
        return _read_exr(path)
    if suffix in (".png", ".tif", ".tiff", ".jpg", ".jpeg"):
        return _read_cv2(path)
    return _read_av(path)


# ---------------------------------------------------------------- reader


class SequenceReader(Reader):
    """An image sequence (pattern) or a single image; ``info`` complete when built.

    Opening decodes the first frame (size, depth, EXR rate/timecode); each
    ``read`` decodes one file per frame and holds nothing else.
    """

    def __init__(self, path: str | os.PathLike, first_frame: int = 1001, *, policy: ReadPolicy | None = None):
        self.path = os.fspath(path)
        self.policy = policy or ReadPolicy()
        self._subs: dict[int, str] = {}
        self.pattern: SeqPattern | None = parse_pattern(self.path)
        if self.pattern is not None:
            numbers = self.pattern.scan()
            if not numbers:
                raise InputError(f"no files match {self.path}",
                                 fix="check the pattern: #### means exactly 4 digits, e.g. shot.1001.exr")
            kind = "sequence"
        else:
            if not os.path.isfile(self.path):
                raise InputError(f"{self.path} does not exist", fix="check the path")
            numbers = [image_number(self.path)]
            kind = "image"
        self._numbers = numbers
        self._index = {n: i for i, n in enumerate(numbers)}
        first = self._decode(numbers[0])
        h, w = first.rgb.shape[:2]
        self._size = (w, h)
        rate = first.rate or DEFAULT_RATE
        st = os.stat(self._file(numbers[0]))
        holes = tuple(missing_frames(numbers))
        # Filled holes keep the source's numbering: every number first..last is a frame.
        listed = tuple(range(numbers[0], numbers[-1] + 1)) if holes and self.policy.missing != "error" else tuple(numbers)
        self._position = {n: i for i, n in enumerate(listed)}
        self.info = SourceInfo(
            path=self.path,
            kind=kind,
            format=first.codec,
            codec=first.codec,
            width=w,
            height=h,
            pix_fmt=first.pix_fmt,
            bit_depth=first.bit_depth,
            rate=rate,
            time_base=1 / rate,
            frame_numbers=listed,
            colour=first.colour,
            timecode=first.timecode,
            pixel_aspect=Fraction(first.pixel_aspect).limit_denominator(1000),
            alpha=first.alpha_mode,
            missing=holes,
            notes=(f"{self.path}: frames {compress_ranges(list(holes))} are missing; rendered as "
                   f"{self.policy.missing} (--missing {self.policy.missing})",) if listed != tuple(numbers) else (),
            size_bytes=st.st_size if kind == "image" else sum(_size(self._file(n)) for n in numbers),
            mtime_ns=st.st_mtime_ns,
        )

    def _file(self, number: int) -> str:
        return self.pattern.path(number) if self.pattern is not None else self.path

    def _decode(self, number: int) -> _Image:
        path = self._file(number)
        try:
            return read_image(path)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
            raise InputError(f"{path}: frame {number} cannot be read: {exc}", fix=_FIX_DAMAGED) from exc

    def read(self, numbers: Iterable[int]) -> Iterator[Frame]:
        """Yield :class:`Frame` s (``pts``/``time_base`` None) for plate ``numbers``.

        Raises :class:`InputError` for a number in a gap or outside the
        sequence, and for a frame whose size differs from the first.
        """
        for number in numbers:
            index = self._index.get(number)
            if index is None:
                if self.policy.missing == "error" or not self._numbers[0] <= number <= self._numbers[-1]:
                    raise self._missing_error(number)
                yield Frame(number=number, index=self._position[number], rgb=self._substitute(number, "missing"))
                continue
            try:
                image = self._decode(number)
            except InputError:
                if self.policy.on_bad_frame == "error":
                    raise
                yield Frame(number=number, index=self._position[number], rgb=self._substitute(number, "bad"))
                continue
            if image.rgb.shape[1::-1] != self._size:
                h, w = image.rgb.shape[:2]
                raise InputError(
                    f"{self._file(number)}: frame {number} is {w}x{h}, the sequence is "
                    f"{self._size[0]}x{self._size[1]}",
                    fix="render every frame of the sequence at one size")
            yield Frame(number=number, index=self._position[number], rgb=image.rgb, alpha=image.alpha)

    def substitutions(self) -> dict[int, str]:
        return dict(self._subs)

    def _substitute(self, number: int, why: str) -> np.ndarray:
        """The picture for a missing (``why="missing"``) or undecodable frame."""
        mode = self.policy.missing if why == "missing" else self.policy.on_bad_frame
        w, h = self._size
        if mode == "hold":
            for n in reversed(self._numbers[:bisect.bisect_left(self._numbers, number)]):
                try:
                    rgb = self._decode(n).rgb
                except InputError:
                    continue
                self._subs[number] = f"hold {n}"
                return rgb
            mode = "black"  # nothing earlier to hold
        self._subs[number] = mode
        if mode == "checkerboard":
            return checkerboard(w, h)
        return np.zeros((h, w, 3), np.float32)

    def _missing_error(self, number: int) -> InputError:
        first, last = self._numbers[0], self._numbers[-1]
        name = self.pattern.hashes if self.pattern is not None else self.path
        if first <= number <= last:
            gaps = compress_ranges(list(self.info.missing))
            return InputError(
                f"frame {number} of {name} is missing ({self._file(number)} does not exist; missing: {gaps})",
                fix="render or copy the missing frames, choose a frame range without gaps, or fill them "
                    "with --missing black|hold|checkerboard")
        return InputError(f"frame {number} is outside {name} (frames {first}-{last})",
                          fix="choose frames inside the sequence's range (see `cinescale probe`)")


def checkerboard(width: int, height: int, square: int = 64) -> np.ndarray:
    """Nuke's stand-in for a missing frame: mid-grey and dark-grey squares."""
    yy, xx = np.mgrid[0:height, 0:width]
    on = ((yy // square) + (xx // square)) % 2 == 0
    return np.repeat(np.where(on, np.float32(0.5), np.float32(0.25))[..., None], 3, axis=-1)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
