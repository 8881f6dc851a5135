"""Join per-chunk intra-frame movies into one master by packet copy.

Chunks come from :class:`~cinescale_post.media.movie_writer.MovieWriter`
runs over consecutive frame ranges: each starts at pts 0 and carries its
position in its timecode (source timecode + its first frame). Joining them
needs no re-encode when every frame is a key frame (ProRes, DNxHR), so the
master is bit-identical to the chunks' pixels. On the way this module:

* checks the chunks belong together (codec, size, pixel format, time base,
  profile) and follow each other without gap or overlap (their timecodes);
* restores absolute pts from the source's pts table (VFR included), so the
  master's timing equals the source's, rebased to start at 0;
* writes the ``tmcd`` track (``codec_context.framerate`` must be set on a
  template stream, or the MOV muxer silently drops it, MEDIA_IO 2.7);
* copies the source's audio by packet when the chunks cover the whole source;
* writes ``.<name>.partial-<pid><suffix>`` with ``+faststart`` and renames it.

The master is QuickTime (``.mov``), MPEG-4 (``.mp4``/``.m4v``, the H.264 /
H.265 delivery files; the same ISO-BMFF muxer in another mode, so timing, edit
list, ``colr``/``pasp`` and ``tmcd`` work alike) or MXF OP1a (DNxHR; CFR,
48 kHz PCM, timecode in the material package), and audio the container
cannot hold by packet copy becomes PCM (``media.audio`` asks FFmpeg's muxer of
that container; the MP4 muxer takes PCM as ISO/IEC 23003-5 ``ipcm``). Long-GOP
chunks (H.264/H.265) are joined only when there is one: their GOPs cannot be
cut at chunk boundaries (the plan writes such movies as one chunk).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction

from cinescale_post.contracts.errors import InputError, OutputError, PlanError
from cinescale_post.contracts.media import SourceInfo
from cinescale_post.media.audio import AudioPassThrough, audio_mode
from cinescale_post.media.publish import output_error, prepare_folder, remove_quietly, temp_name
from cinescale_post.media.timecode import offset_timecode, source_pts

log = logging.getLogger(__name__)

# Decoders whose every frame is a key frame: the only ones packet-joinable
# without touching the GOP structure.
INTRA_CODECS = frozenset({"prores", "dnxhd", "mjpeg", "ffv1", "v210", "r210", "qtrle", "png", "dpx"})
#: master suffix -> FFmpeg muxer
CONTAINERS = {".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".mxf": "mxf"}
#: what our MP4 masters hold (ProRes and DNxHR are QuickTime codecs)
MP4_CODECS = frozenset({"h264", "hevc"})


@dataclass(frozen=True)
class _Chunk:
    path: str
    codec: str
    profile: str | None
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    frames: int
    timecode: str | None

    def layout(self) -> tuple:
        return self.codec, self.profile, self.width, self.height, self.pix_fmt, self.time_base

    def describe(self) -> str:
        return (f"{self.codec} {self.profile or ''} {self.width}x{self.height} {self.pix_fmt} "
                f"time base {self.time_base}").replace("  ", " ")


def _inspect(path: str) -> _Chunk:
    import av

    if not os.path.isfile(path):
        raise InputError(f"chunk {path} does not exist",
                         fix="render the missing chunk again (re-running the render resumes only what is missing)")
    try:
        with av.open(path) as c:
            if len(c.streams.video) != 1:
                raise InputError(f"chunk {path} has {len(c.streams.video)} video streams, expected 1",
                                 fix="pass only chunk movies written by cinescale render")
            v = c.streams.video[0]
            cc = v.codec_context
            frames = v.frames or sum(1 for p in c.demux(v) if p.dts is not None)
            tc = v.metadata.get("timecode") or c.metadata.get("timecode")
            for s in c.streams.data:
                tc = tc or s.metadata.get("timecode")
            return _Chunk(path, cc.name, cc.profile, cc.width, cc.height, cc.pix_fmt, Fraction(v.time_base),
                          frames, tc)
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"chunk {path} cannot be read: {exc}",
                         fix="delete it and render that chunk again") from exc


def _check(chunks: list[_Chunk], source: SourceInfo, first_index: int) -> None:
    """Same layout everywhere, intra-frame codec, timecodes contiguous."""
    ref = chunks[0]
    if ref.codec not in INTRA_CODECS and len(chunks) > 1:  # one long-GOP chunk is remuxed whole
        raise InputError(f"chunk {ref.path} is {ref.codec}, which has inter-frame prediction; "
                         "packet joining is only safe for intra-frame codecs",
                         fix="render chunks as ProRes or DNxHR (or EXR) and assemble those")
    for c in chunks[1:]:
        if c.layout() != ref.layout():
            raise InputError(f"chunk {c.path} ({c.describe()}) does not match chunk {ref.path} ({ref.describe()})",
                             fix="re-render the odd chunk with the same plan (render --overwrite)")
    if ref.timecode is None:
        return
    start = first_index
    for c in chunks:
        want = offset_timecode(ref.timecode, source.rate, start - first_index)
        if c.timecode is not None and want is not None and c.timecode != want:
            raise InputError(f"chunk {c.path} starts at timecode {c.timecode}, expected {want}: "
                             "a chunk is missing, repeated or out of order",
                             fix="pass every chunk once, in frame order")
        start += c.frames
    if source.timecode:
        expect0 = offset_timecode(source.timecode, source.rate, first_index)
        if expect0 and ref.timecode != expect0:
            log.warning("first chunk %s starts at %s but source frame %d is %s (explicit timecode?)",
                        ref.path, ref.timecode, first_index, expect0)


def concat_movies(chunk_paths: list[str], out_path: str, *, source: SourceInfo, audio: bool | str = True,
                  timecode_offset_frames: int = 0) -> str:
    """Join ``chunk_paths`` (in frame order) into ``out_path`` (.mov, .mp4); return it.

    Args:
        chunk_paths: per-chunk movies, consecutive, first to last.
        out_path: the master to write; replaced atomically when complete.
        source: the source the chunks were rendered from (pts table, rate,
            timecode, audio).
        audio: the source audio, by packet copy (``True``/"copy"; streams
            .mov cannot hold become PCM), as PCM ("pcm"), or not (``False``/
            "none"); done only when the chunks
            cover the whole source (a partial range would need trimming,
            which packet copy cannot do sample-accurately).
        timecode_offset_frames: index in the source of the first chunk's
            first frame (0 for a full render).

    Raises:
        InputError: a chunk is missing, unreadable, long-GOP, mismatched or
            out of order.
        OutputError: the master cannot be written.
        PlanError: ``out_path`` is not a .mov, .mp4 or .mxf, or holds no such codec.
    """
    import av

    if not chunk_paths:
        raise InputError("no chunks to assemble", fix="render first; assemble joins the chunks a render wrote")
    final = os.path.abspath(out_path)
    fmt = CONTAINERS.get(os.path.splitext(final)[1].lower())
    if fmt is None:
        raise PlanError(f"assemble writes QuickTime (.mov) or MPEG-4 (.mp4) movies, not {out_path}",
                        fix="name the master *.mov (ProRes, DNxHR, H.264/H.265) or *.mp4 (H.264/H.265)")
    chunks = [_inspect(str(p)) for p in chunk_paths]
    if fmt == "mp4" and chunks[0].codec not in MP4_CODECS:
        raise PlanError(f"{out_path}: MPEG-4 files hold H.264/H.265, not {chunks[0].codec} ({chunks[0].path})",
                        fix=f"name the master {os.path.splitext(out_path)[0]}.mov")
    if fmt == "mxf" and chunks[0].codec != "dnxhd":
        raise PlanError(f"{out_path}: our MXF masters hold DNxHR, not {chunks[0].codec} ({chunks[0].path})",
                        fix=f"name the master {os.path.splitext(out_path)[0]}.mov")
    first = timecode_offset_frames
    _check(chunks, source, first)
    total = sum(c.frames for c in chunks)
    whole = first == 0 and total == source.frame_count
    if first + total > source.frame_count and source.frame_count:
        raise InputError(f"the chunks hold {total} frames from source frame {first}, but the source has "
                         f"{source.frame_count}", fix="assemble the chunks of this source only")

    prepare_folder(final)
    tmp = temp_name(final)
    base = source_pts(source, first)
    pass_audio = None
    mode = audio_mode(audio)
    if mode != "none" and source.kind == "movie" and source.audio:
        if whole:
            pass_audio = AudioPassThrough(source.path, fmt, shift_s=Fraction(base) * source.time_base,
                                          mode=mode)
        else:
            log.warning("audio not copied into %s: the chunks cover source frames %d-%d of %d",
                        final, first, first + total - 1, source.frame_count)
    fobj = None
    try:
        # MXF OP1a has neither atoms nor edit lists (and is CFR: the writer refused VFR)
        opts = {} if fmt == "mxf" else {"movflags": "+faststart", "use_editlist": "1"}
        # A Python file, as in movie_writer: after a refused packet the trailer can
        # crash FFmpeg, and PyAV writes none once this file is closed.
        fobj = open(tmp, "wb", buffering=0)
        out = av.open(fobj, "w", format=fmt, options=opts)
    except (OSError, av.FFmpegError) as exc:
        if fobj is not None:
            fobj.close()
            remove_quietly(tmp)
        if pass_audio:
            pass_audio.close()
        raise output_error(final, exc) from exc
    closing = False
    try:
        _join(av, out, chunks, source, first, base, pass_audio)
        closing = True
        out.close()
        fobj.close()
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            fobj.close()  # first: no trailer after a failure
        except OSError:
            pass
        if not closing:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
        remove_quietly(tmp)
        if isinstance(exc, (OSError, av.FFmpegError)) and not isinstance(exc, (InputError, OutputError)):
            if isinstance(exc, OSError):
                raise output_error(final, exc) from exc
            raise OutputError(f"cannot write {final}: the {fmt} muxer refused a packet of {chunks[0].path} "
                              f"({exc}); the chunks are kept", fix="run `cinescale assemble` or the render "
                              "again; if it repeats, render with --overwrite and report it") from exc
        raise
    finally:
        if pass_audio:
            pass_audio.close()
    return final


def _join(av, out, chunks: list[_Chunk], source: SourceInfo, first: int, base: int,
          pass_audio: AudioPassThrough | None) -> None:
    tb = chunks[0].time_base
    with av.open(chunks[0].path) as c0:
        tmpl = c0.streams.video[0]
        vout = out.add_stream_from_template(tmpl)
        vout.time_base = tb
        vout.codec_context.framerate = source.rate  # without it no tmcd track (MEDIA_IO 2.7)
        # The template does not carry the sample entry: without this every ProRes
        # master is tagged apch (HQ), and decoders pick the profile from the tag.
        vout.codec_context.codec_tag = tmpl.codec_context.codec_tag
        # Nor the pixel aspect ('pasp': a kept anamorphic squeeze) or the colour tags ('colr').
        tcc = tmpl.codec_context
        vout.codec_context.sample_aspect_ratio = tmpl.sample_aspect_ratio or tcc.sample_aspect_ratio or Fraction(1)
        for tag in ("color_primaries", "color_trc", "colorspace", "color_range"):
            setattr(vout.codec_context, tag, getattr(tcc, tag))
        if "encoder" in tmpl.metadata:
            vout.metadata["encoder"] = tmpl.metadata["encoder"]  # compressor name
    tc = chunks[0].timecode or (offset_timecode(source.timecode, source.rate, first) if source.timecode else None)
    if tc:
        out.metadata["timecode"] = tc
    if pass_audio:
        pass_audio.add_streams(out)
    start = first
    for ch in chunks:
        # The chunk's pts are relative to its first frame; the source table
        # gives that frame's absolute place, so the master keeps VFR timing.
        offset = Fraction(source_pts(source, start) - base) * source.time_base / tb
        if offset.denominator != 1:
            raise InputError(f"chunk {ch.path} cannot be placed exactly in time base {tb}",
                             fix="render chunks with the source time base (the default)")
        with av.open(ch.path) as c:
            v = c.streams.video[0]
            first_pts = None
            for pkt in c.demux(v):
                if pkt.dts is None:
                    continue
                if not pkt.is_keyframe and len(chunks) > 1:
                    raise InputError(f"chunk {ch.path} has a non-key frame at pts {pkt.pts}",
                                     fix="render chunks with an intra-frame codec (ProRes, DNxHR)")
                if first_pts is None:
                    first_pts = pkt.pts
                pts = pkt.pts - first_pts + int(offset)
                # A single long-GOP chunk keeps its decode order (B-frames: dts < pts).
                dts = pts if ch.codec in INTRA_CODECS else pkt.dts - first_pts + int(offset)
                pkt.pts, pkt.dts = pts, dts
                dur = pkt.duration or 0
                pkt.stream = vout
                out.mux(pkt)
                if pass_audio:
                    pass_audio.mux_until(out, Fraction(pts + max(dur, 1)) * tb)
        start += ch.frames
    if pass_audio:
        pass_audio.finish(out)
