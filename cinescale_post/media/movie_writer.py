"""Movie masters through PyAV: ProRes, DNxHR HQX, and H.264/H.265 10-bit.

What this module guarantees (each point is a measured pitfall in
reference/MEDIA_IO.md, sections 2.3, 2.4, 2.7 and 3):

* **Colour.** R'G'B' becomes Y'CbCr through our own matrix
  (:func:`cinescale_post.media.colour.rgb_to_ycbcr`), written straight into the
  frame planes; swscale never touches the pixels (it is ~0.4 % off at 10-bit).
  The tags of ``target.colour`` go on the codec context (``colr`` atom, VUI)
  *and* on every frame (the ProRes frame header takes primaries, transfer and
  matrix from the frame), so container and bitstream agree with the pixels.
* **Time.** Codec and stream time base are the *source* time base and every
  frame carries the source pts (rebased so the file starts at 0, see below) and
  an explicit ``time_base``, so VFR survives and no packet collapses to pts 0.
* **Timecode.** The ``tmcd`` track starts at the source timecode plus the
  position of the first frame this writer receives (drop-frame aware).
* **Audio.** When the target covers the whole source, every audio stream is
  copied by packet (bit-exact, AAC priming kept) and interleaved by time.
  ``target.audio`` is ``True``/``"copy"``, ``"pcm"`` or ``False``/``"none"``
  (``media.audio.AUDIO_MODES``): ``pcm`` decodes every stream to PCM at the
  source rate and layout, and ``copy`` does so only for a stream the container
  cannot hold by packet copy, as :mod:`assemble` does for chunked masters.
* **Crash safety.** The movie is written as ``.<name>.partial-<pid><suffix>``
  next to the final name with ``movflags=+hybrid_fragmented``: while rendering,
  complete fragments are on disk and readable; ``close()`` turns it into an
  ordinary (non-fragmented) movie and renames it into place.

Choices the brief left open, and why:

* ``+faststart`` cannot be combined with ``+hybrid_fragmented`` (the muxer
  refuses the pair with EINVAL, measured on FFmpeg 8.1.2). Crash safety wins for
  the writer, so its moov atom sits at the end; :func:`assemble.concat_movies`
  writes the joined master with ``+faststart``.
* ``use_editlist=1`` is forced: with ``+hybrid_fragmented`` the default drops the
  edit list, which shifts *video* pts by the AAC priming (512 ticks at 1/24000)
  and loses the priming itself. With it, the final file matches a plain MOV.
* Each movie starts at pts 0 (the source pts of its first frame is subtracted).
  A chunk that kept its absolute pts would get an empty edit before its first
  frame, and an NLE would then count the offset twice (once from the edit, once
  from the offset timecode). The chunk's position is carried by its timecode;
  :mod:`assemble` restores the absolute positions from the source pts table.
* ``flush_packets=1``: without it, fragments sit in the I/O buffer and a killed
  render of small frames leaves only the 56-byte header on disk.
* MXF (DNxHR only): no fragments (the temp name still protects the final
  name), CFR only, PCM audio only; the MXF muxer re-chunks PCM per edit unit
  and ends it with the video, so its packets are not byte-identical to the
  source's (the samples are).
* ProRes/DNxHR are always coded limited range: they have no range flag, so
  full-range codes would be misread. H.264/H.265 follow ``target.colour.range``.
* DNxHR is always coded with the BT.709 matrix: FFmpeg's VC-3 frame header
  signals BT.709 and decoders trust it over the ``colr`` atom (measured with
  the FFmpeg 9 CLI), so another matrix would be decoded wrongly.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.media import Frame, OutputTarget, Writer
import cinescale_post.media.colour as colour_mod
from cinescale_post.media.movie_codecs import CHROMA, CONTAINERS, MOVIE_CODECS, validate_movie_options
from cinescale_post.media.yuv_planes import encode_into
from cinescale_post.media.audio import AudioPassThrough, audio_mode
from cinescale_post.media.publish import output_error, prepare_folder, remove_quietly, temp_name
from cinescale_post.media.timecode import source_duration, source_offset, source_pts, start_timecode

log = logging.getLogger(__name__)


# The MOV muxer holds a whole fragment in memory (a doubling buffer) until it is
# written: one second of UHD ProRes 422 HQ is ~94 MB, which the buffer rounds up
# to 131 MB and briefly holds twice while growing (memray on bench_master, issue
# 11: 262 of a 501 MB peak). Fragments also end at this size, so a UHD master's
# memory no longer grows with fragment_seconds and a crash loses at most this much.
_FRAGMENT_BYTES = 8 << 20


class MovieWriter(Writer):
    """Writes one movie (a whole master or one chunk) for ``target``.

    ``target.options`` are validated again (cheap, and defaults get filled
    when a caller skipped ``validate_options``). Raises :class:`PlanError`
    for a wrong suffix or odd dimensions with subsampled chroma, and
    :class:`OutputError` when the folder cannot be written.
    """

    def __init__(self, target: OutputTarget):
        import av

        self.target = target
        self.opts = opts = validate_movie_options(target.codec, target.options)  # PlanError if unknown
        self.spec = spec = MOVIE_CODECS[target.codec]
        self.final = os.path.abspath(target.path)
        suffix = os.path.splitext(self.final)[1].lower()
        if suffix not in spec.suffixes:
            raise PlanError(f"codec {target.codec!r} cannot be written to a {suffix or 'suffix-less'} file "
                            f"({target.path})", fix=f"use a file ending in {' or '.join(spec.suffixes)}")
        chroma = CHROMA[opts["pix_fmt"]]
        w, h = target.width, target.height
        if (chroma != "444" and w % 2) or (chroma == "420" and h % 2):
            raise PlanError(f"{target.codec} with {chroma} chroma needs even dimensions, got {w}x{h}",
                            fix="pad or crop the output to an even width and height")
        if spec.family == "dnxhr" and (w < 256 or h < 120):
            # dnxhdenc refuses smaller DNxHR frames at open with a bare EINVAL.
            raise PlanError(f"{target.codec} needs at least 256x120, got {w}x{h}",
                            fix="use a larger output size or a ProRes codec")
        self.fmt = CONTAINERS[suffix]
        # ProRes 4444 holds alpha (straight, as QuickTime stores it); other codecs cannot
        # (the plan has already warned that it is dropped).
        self.alpha = bool(target.alpha) and spec.family == "prores" and CHROMA.get(opts["pix_fmt"]) == "444"
        if target.alpha and not self.alpha:
            log.warning("%s: %s cannot hold alpha; it is dropped", self.final, target.codec)
        self.pix_fmt = "yuva444p10le" if self.alpha else opts["pix_fmt"]
        src = target.source
        self.matrix, _ = colour_mod.resolve_matrix(target.colour.matrix, h)
        self.range = colour_mod.resolve_range(target.colour.range)
        if spec.family != "h26x":
            # ProRes/DNxHR carry no range flag (MOV 'colr nclc' has none either), so
            # readers assume limited. Range is only how R'G'B' is coded, so encode
            # limited instead of writing full-range codes that would be misread.
            self.range = colour_mod.RANGE_LIMITED
        if spec.family == "dnxhr" and self.matrix != 1:
            # FFmpeg's DNxHR frame header signals BT.709 whatever the context says, and
            # decoders believe the header over 'colr'; so code the pixels BT.709 too
            # rather than write a master whose bitstream contradicts its pixels.
            log.warning("%s: DNxHR signals the BT.709 matrix in every frame; coding BT.709 "
                        "instead of matrix %s", self.final, self.matrix)
            self.matrix = 1
        if src.vfr and self.fmt == "mxf":
            raise PlanError(f"MXF cannot hold variable frame rate ({src.path})",
                            fix="write a .mov (-o OUT.mov), or convert the source to a constant frame rate first "
                                "(ffmpeg -i IN -fps_mode cfr ...)")
        prepare_folder(self.final)
        self.tmp = temp_name(self.final)
        self._audio: AudioPassThrough | None = None
        whole = tuple(target.frame_numbers) == tuple(src.frame_numbers)
        try:
            mode = audio_mode(target.audio)  # True -> copy, False -> none, or the --audio mode itself
        except ValueError as exc:
            raise PlanError(f"{target.path}: audio = {target.audio!r}", fix="use copy, pcm or none") from exc
        if mode != "none" and src.kind == "movie" and src.audio:
            if whole:
                self._audio = AudioPassThrough(src.path, self.fmt, mode=mode)
                if not self._audio.streams:  # probe saw audio the file no longer has
                    self._audio.close()
                    self._audio = None
            else:
                log.warning("audio not copied into %s: it covers frames %s-%s of %s only "
                            "(assemble adds audio to chunked renders)", self.final,
                            target.frame_numbers[0] if target.frame_numbers else "?",
                            target.frame_numbers[-1] if target.frame_numbers else "?", src.path)
        mux_opts = {"movflags": "+hybrid_fragmented", "use_editlist": "1", "flush_packets": "1",
                    "frag_duration": str(int(opts["fragment_seconds"] * 1_000_000)),
                    "frag_size": str(_FRAGMENT_BYTES)}
        if self.fmt == "mxf":
            mux_opts = {"flush_packets": "1"}  # MXF has no fragments; the temp name still protects
        self._file = None
        try:
            # A Python file, not a path: after a refused packet FFmpeg's MOV trailer
            # can crash the process (segfault in av_write_trailer, measured with
            # PyAV 18.1 on a refused HEVC dts); PyAV skips the trailer when the
            # file object is already closed, which is how abort() throws a movie away.
            self._file = open(self.tmp, "wb", buffering=0)  # FFmpeg buffers; nothing left to flush at abort
            self.out = av.open(self._file, "w", format=self.fmt, options=mux_opts)
        except (OSError, av.FFmpegError) as exc:
            if self._file is not None:
                self._file.close()
                remove_quietly(self.tmp)
            if self._audio:
                self._audio.close()
            raise output_error(self.final, exc) from exc
        self._out_open = True  # the container is closed once only: PyAV crashes on a second close
        try:
            self._setup_video(av)
            if self._audio:
                self._audio.add_streams(self.out)
        except BaseException:
            self.abort()
            raise
        self._spare_frame = None  # the VideoFrame the next write fills (intra codecs)
        self._base: int | None = None
        self._last_pts: int | None = None
        self._dts_shift: int | None = None
        self._last_dts: int | None = None
        self._closed = False

    def _setup_video(self, av) -> None:
        t, spec, opts, src = self.target, self.spec, self.opts, self.target.source
        enc_opts: dict[str, str] = {}
        if spec.family == "prores":
            enc_opts = {"profile": spec.profile, "vendor": "apl0"}
        elif spec.family == "dnxhr":
            enc_opts = {"profile": spec.profile}
        elif spec.encoder == "libx264":
            enc_opts = {"crf": str(opts["crf"]), "preset": opts["preset"]}
        else:
            params = "log-level=error"
            if opts["threads"] == 1:
                params += ":pools=1:frame-threads=1"
            enc_opts = {"crf": str(opts["crf"]), "preset": opts["preset"], "x265-params": params}
        # rate sets codec_context.framerate, which the MOV muxer needs to write tmcd.
        s = self.out.add_stream(spec.encoder, rate=src.rate, options=enc_opts)
        s.width, s.height, s.pix_fmt = t.width, t.height, self.pix_fmt
        cc = s.codec_context
        cc.time_base = src.time_base
        s.time_base = src.time_base
        cc.color_primaries = t.colour.primaries
        cc.color_trc = t.colour.trc
        cc.colorspace = self.matrix
        cc.color_range = self.range
        cc.sample_aspect_ratio = Fraction(t.pixel_aspect or 1)  # 'pasp' atom and VUI aspect_ratio_idc
        cc.field_order = 1  # AV_FIELD_PROGRESSIVE -> 'fiel' atom
        if opts["threads"]:
            cc.thread_count = opts["threads"]
        elif spec.family in ("prores", "dnxhr"):
            # Intra codecs: slice threads (count 0 = FFmpeg's choice, cores + 1).
            # Frame threads hold thread_count + 2 input frames (33 MB each at UHD
            # 4:2:2 10-bit) and, with 2 threads, ran no faster; slices encode each
            # frame before encode() returns. The bytes are the same either way
            # (issue 11 benchmark: 482 -> 351 MiB peak, 16.2 -> 9.8 s wall, md5 equal).
            cc.thread_type = "SLICE"
        else:
            cc.thread_type = "AUTO"
        if spec.tag:
            cc.codec_tag = spec.tag
        s.metadata["encoder"] = spec.compressor  # MOV compressor name
        self.stream = s

    # -------------------------------------------------------------- Writer API

    def write(self, frame: Frame) -> None:
        import av

        t = self.target
        if frame.rgb.shape != (t.height, t.width, 3):
            raise ValueError(f"frame {frame.number} is {frame.rgb.shape}, the target wants "
                             f"({t.height}, {t.width}, 3)")
        src = t.source
        pts = self._pts_of(frame)
        if self._base is None:
            self._base = pts
            tc = start_timecode(src, self.opts["timecode"], source_offset(frame, src))
            if tc:
                self.out.metadata["timecode"] = tc
            if self._audio:
                self._audio.shift_s = Fraction(pts) * src.time_base
        rel = pts - self._base
        if self._last_pts is not None and rel <= self._last_pts:
            raise ValueError(f"frame {frame.number} (pts {pts}) arrived out of order; writers need "
                             "frames in presentation order")
        self._last_pts = rel
        vf = self._spare_frame
        if vf is None:
            vf = av.VideoFrame(t.width, t.height, self.pix_fmt)
            # ProRes/DNxHR encode a frame before encode() returns (slice threads): its
            # buffer is free again for the next one, which saves a fresh 33 MB UHD
            # frame and its page faults per frame (issue 11 benchmark).
            if self.spec.family in ("prores", "dnxhr"):
                self._spare_frame = vf
        else:
            vf.make_writable()  # copies only if the encoder still held a reference
        alpha = None
        if self.pix_fmt.startswith("yuva"):  # a frame without alpha is opaque; alpha is full range
            alpha = np.ones((t.height, t.width), np.float32) if frame.alpha is None else frame.alpha
        encode_into(vf, frame.rgb, self.opts["pix_fmt"], self.matrix, self.range, alpha)
        vf.pts = rel
        vf.time_base = src.time_base  # without it PyAV rescales pts to 0 (MEDIA_IO 3.1)
        vf.duration = source_duration(src, frame.index)
        # The frame's tags, not the codec context's, are what prores_ks writes into
        # every frame header (and what x264/x265 and dnxhd see per frame); the
        # context only reaches the 'colr' atom. Both must say the same.
        vf.color_range = self.range
        vf.colorspace = self.matrix
        vf.color_primaries = t.colour.primaries
        vf.color_trc = t.colour.trc
        try:
            for pkt in self.stream.encode(vf):
                self._mux_video(pkt)
            if self._audio:
                end = Fraction(rel + max(vf.duration, 1)) * src.time_base
                self._audio.mux_until(self.out, end)
        except (OSError, av.FFmpegError) as exc:  # FFmpegError: not an OSError in PyAV 18 (EINVAL, ENOSYS)
            self.abort()
            raise self._error(exc, "write") from exc

    def _mux_video(self, pkt) -> None:
        if self.spec.encoder == "libx265" and pkt.dts is not None and pkt.pts is not None:
            # libx265 (PyAV 18 wheel) gives every dts of a stream of fewer than 3
            # frames shifted by the same uninitialised offset (measured: -4.9e18 in
            # every run of a 2-frame clip), and the muxer then fails ("pts/dts pair
            # unsupported"). x265's own convention is dts = pts - 2 frames for the
            # first packet (B-pyramid depth, what every longer stream gets); restore
            # that when the first dts is not pts minus a few frames.
            if self._dts_shift is None:
                src = self.target.source
                step = max(1, round(1 / (Fraction(src.rate) * src.time_base))) if src.rate else 1
                bad = pkt.dts > pkt.pts or pkt.pts - pkt.dts > 16 * step
                self._dts_shift = (pkt.pts - 2 * step) - pkt.dts if bad else 0
            pkt.dts += self._dts_shift
            # and never a dts the muxer refuses: increasing, and not after the pts
            if self._last_dts is not None and pkt.dts <= self._last_dts:
                pkt.dts = self._last_dts + 1
            pkt.dts = min(pkt.dts, pkt.pts)
            self._last_dts = pkt.dts
        self.out.mux(pkt)

    def _pts_of(self, frame: Frame) -> int:
        src = self.target.source
        if src.pts or frame.pts is None or frame.time_base is None:
            return source_pts(src, frame.index)
        return round(Fraction(frame.pts) * frame.time_base / src.time_base)

    def close(self) -> list[str]:
        """Flush, finish the movie and rename it into place; ``[]`` if no
        frame was written (nothing is published for an empty range)."""
        if self._closed:
            return [self.final] if os.path.exists(self.final) and self._base is not None else []
        if self._base is None:
            self.abort()
            return []
        import av

        try:
            for pkt in self.stream.encode():
                self._mux_video(pkt)
            if self._audio:
                self._audio.finish(self.out)
            self._close_container()
            os.replace(self.tmp, self.final)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise self._error(exc, "finish") from exc
        finally:
            if self._audio:
                self._audio.close()
        self._closed = True
        return [self.final]

    def _error(self, exc: BaseException, doing: str):
        """An OutputError for ``exc``: the disk's (OSError) or the muxer's."""
        if isinstance(exc, OSError):
            return output_error(self.final, exc, doing)
        from cinescale_post.contracts.errors import OutputError

        return OutputError(f"cannot {doing} {self.final}: the {self.fmt} muxer refused the {self.target.codec} "
                           f"stream ({exc}); its temporary file was removed, published files are unchanged",
                           fix="run the render again (it resumes); if it repeats, write another codec "
                               "(e.g. --set output.codec=prores_hq) and report it with the source file")

    def _close_container(self) -> None:
        """Close the output container (writing the trailer) and the file, at
        most once; the flag drops *before* the call, so a close that raised is
        not retried by ``abort``."""
        if not getattr(self, "_out_open", False):
            return
        self._out_open = False
        try:
            self.out.close()
        finally:
            self._file.close()

    def abort(self) -> None:
        """Throw the movie in progress away (its temporary file); never
        raises and never touches published files. Safe to call twice, after a
        failed ``close()`` and from ``__init__``'s own clean-up."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()  # first: PyAV then writes no trailer (see __init__)
            except OSError:
                pass
        try:
            self._close_container()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        if getattr(self, "_audio", None):
            try:
                self._audio.close()
            except Exception:  # noqa: BLE001
                pass
        if getattr(self, "tmp", None):
            remove_quietly(self.tmp)
