"""The output's format, applied to the QC reference.

Detail gain compares the render with a Lanczos upscale of the source. A
master format changes pixels on its own: ProRes and DNxHR quantise DCT
coefficients (small high-frequency ones go to zero), PNG/TIFF and every
video format clip to [0, 1], video quantises Y'CbCr to 10 bits. Measured on
a Lanczos draft of a 480x270 natural-spectrum clip at 960x540 against a
plain Lanczos reference: EXR 1.000, PNG16 0.995 (clipping), 10-bit 4:2:2
planes without a codec 0.994, ProRes HQ 0.921, ProRes Proxy 0.646, DNxHR HQX
1.075. Decode (our exact matrix: the Y' plane *is* the luma QC measures),
fit (the manifest's geometry) and 4:2:2 (chroma does not enter luma) change
nothing; the codec does. So the reference is passed through the same chain
as the render -- clip, Y'CbCr planes with the render's matrix, range and
chroma, the same encoder, profile and options, then our decoder -- and a
Lanczos draft reads 1.0 in every format. What is left is what the render
itself added or lost.

A :class:`Delivery` takes reference frames in order and hands them back
after the round trip; a long-GOP encoder (H.264/H.265) returns them late
(its look-ahead), intra codecs at once. ``push`` / ``flush`` return
``[(number, rgb)]`` in the order frames were pushed.

Shapes: frames are (H, W, 3) float32 R'G'B'.
"""

from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction

import numpy as np

log = logging.getLogger(__name__)

# QuickTime sample entries of ProRes -> our codec names.
_PRORES_TAGS = {"apco": "prores_proxy", "apcs": "prores_lt", "apcn": "prores_standard", "apch": "prores_hq",
                "ap4h": "prores_4444", "ap4x": "prores_4444xq"}


class Delivery:
    """Identity: float formats (EXR half/float) keep what the render wrote."""

    label = "none"

    def push(self, number: int, rgb: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return [(number, rgb)]

    def flush(self) -> list[tuple[int, np.ndarray]]:
        return []

    def close(self) -> None:
        pass


class Quantise(Delivery):
    """Integer R'G'B' frames (PNG/TIFF): clip to [0, 1], round to ``bits``."""

    def __init__(self, bits: int, label: str):
        self.scale = np.float32((1 << bits) - 1)
        self.label = label

    def push(self, number, rgb):
        return [(number, np.rint(np.clip(rgb, 0.0, 1.0) * self.scale) / self.scale)]


class Codec(Delivery):
    """Movie frames: Y'CbCr planes like ``media.movie_writer``, then (when
    ``codec`` names one of its codecs) that encoder and FFmpeg's decoder."""

    def __init__(self, codec: str | None, options: dict, *, width: int, height: int, rate: Fraction,
                 pix_fmt: str, matrix: int, range: int):
        self.size = (width, height)
        self.pix_fmt, self.matrix, self.range = pix_fmt, matrix, range
        self.label = f"{codec or 'uncompressed'} ({pix_fmt})"
        self._pending: deque[int] = deque()
        self._enc = self._dec = None
        self._pts = 0
        if codec is not None:
            self._open(codec, options, rate)

    def _open(self, codec: str, options: dict, rate: Fraction) -> None:
        import av

        from cinescale_post.media.movie_codecs import MOVIE_CODECS

        spec = MOVIE_CODECS[codec]
        if spec.family == "prores":
            opts = {"profile": spec.profile, "vendor": "apl0"}
        elif spec.family == "dnxhr":
            opts = {"profile": spec.profile}
        elif spec.encoder == "libx264":
            opts = {"crf": str(options.get("crf", 16)), "preset": str(options.get("preset", "medium"))}
        else:
            opts = {"crf": str(options.get("crf", 18)), "preset": str(options.get("preset", "medium")),
                    "x265-params": "log-level=error"}
        enc = av.CodecContext.create(spec.encoder, "w")
        enc.width, enc.height = self.size
        enc.pix_fmt = self.pix_fmt
        enc.time_base = 1 / Fraction(rate or 24)
        enc.framerate = Fraction(rate or 24)
        enc.colorspace, enc.color_range = self.matrix, self.range
        enc.options = opts
        if options.get("threads"):
            enc.thread_count = int(options["threads"])
        else:
            enc.thread_type = "AUTO"  # as the writer: FFmpeg's slice/frame threads
        self._enc = enc
        self._dec = av.CodecContext.create(_DECODERS[spec.encoder], "r")

    def _planes_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Round trip through quantised planes only (no codec)."""
        import cinescale_post.media.colour as col
        from cinescale_post.media.movie_codecs import CHROMA

        y, cb, cr = col.rgb_to_ycbcr(rgb, matrix=self.matrix, range=self.range, bits=10,
                                     subsampling=CHROMA[self.pix_fmt])
        return col.ycbcr_to_rgb(y, cb, cr, matrix=self.matrix, range=self.range, bits=10)

    def _decoded(self, packets) -> list[tuple[int, np.ndarray]]:
        from cinescale_post.media.frame_rgb import frame_to_rgb

        frames = [f for pkt in packets for f in self._dec.decode(pkt)]
        return [(self._pending.popleft(), frame_to_rgb(f, matrix=self.matrix, range=self.range)) for f in frames]

    def push(self, number, rgb):
        if self._enc is None:
            return [(number, self._planes_rgb(rgb))]
        import av

        import cinescale_post.media.colour as col
        from cinescale_post.media.movie_codecs import CHROMA
        from cinescale_post.media.yuv_planes import fill_planes

        vf = av.VideoFrame(self.size[0], self.size[1], self.pix_fmt)
        fill_planes(vf, col.rgb_to_ycbcr(rgb, matrix=self.matrix, range=self.range, bits=10,
                                         subsampling=CHROMA[self.pix_fmt]))
        vf.pts = self._pts
        vf.time_base = self._enc.time_base
        vf.colorspace, vf.color_range = self.matrix, self.range
        self._pts += 1
        self._pending.append(number)
        return self._decoded(self._enc.encode(vf))

    def flush(self):
        if self._enc is None:
            return []
        return self._decoded([*self._enc.encode(None), None])  # None: drain the decoder too

    def close(self) -> None:
        self._enc = self._dec = None


_DECODERS = {"prores_ks": "prores", "dnxhd": "dnxhd", "libx264": "h264", "libx265": "hevc"}


def _movie_codec(path: str, info) -> str | None:
    """Our codec name for a movie nobody's manifest describes (None: unknown)."""
    import av

    if info.codec == "prores":
        with av.open(path) as c:
            tag = c.streams.video[0].codec_context.codec_tag
        return _PRORES_TAGS.get(tag)
    if info.codec == "dnxhd":
        return "dnxhr_hqx"
    if info.codec in ("h264", "hevc") and info.bit_depth == 10:
        return "h264_10" if info.codec == "h264" else "h265_10"
    return None


def for_output(path: str, info, plan: dict | None = None) -> Delivery:
    """The delivery chain of the render at ``path`` (``info``: its SourceInfo).

    ``plan``: the render's frozen plan from its manifest; its output codec
    and options win (H.264/H.265 quality is not in the file). Without one
    the codec is recognised from the stream (ProRes by its sample entry).
    """
    from cinescale_post.media.movie_codecs import MOVIE_CODECS

    if info.kind != "movie":
        if "f16" in info.pix_fmt or "f32" in info.pix_fmt or info.format == "exr":
            return Delivery()
        return Quantise(info.bit_depth or 16, f"{info.format} {info.bit_depth}-bit")
    out = (plan or {}).get("output") or {}
    codec, options = out.get("codec"), dict(out.get("options") or {})
    if codec not in MOVIE_CODECS:
        codec, options = _movie_codec(path, info), {}
    # What the writer coded (the decoder may hand out more: ProRes 4444 decodes as 12-bit).
    pix_fmt = options.get("pix_fmt") or (MOVIE_CODECS[codec].pix_fmts[0] if codec else info.pix_fmt)
    if pix_fmt not in ("yuv420p10le", "yuv422p10le", "yuv444p10le"):
        log.info("QC reference of %s: %s frames are not modelled; plain Lanczos reference", path, pix_fmt)
        return Delivery()
    from cinescale_post.media.colour import resolve_matrix

    matrix = resolve_matrix(info.colour.matrix, info.height)[0]
    return Codec(codec, options, width=info.width, height=info.height, rate=info.rate, pix_fmt=pix_fmt,
                 matrix=matrix, range=info.colour.range or 1)
