"""Source audio into a master: packet copy where the container can hold the
codec, else PCM at the source's rate and channel layout.

Modes (``--audio``, ``output.audio``):

* ``copy`` (default): every stream the target container takes by packet copy
  is copied bit-exact (AAC priming kept); a stream it cannot hold (Opus,
  Vorbis or FLAC into QuickTime ``.mov``, anything but PCM into MXF) is
  decoded and written as PCM, and the plan says so in a warning.
* ``pcm``: every stream is decoded and written as PCM (a stream that is
  already a PCM the container takes is copied: the samples are the same).
* ``none``: no audio.

Whether a container takes a codec is asked of FFmpeg itself (the muxer's
header is written to memory with the stream's parameters), not read from a
list that goes stale with FFmpeg releases. MXF is the exception: its muxer
needs a picture stream to start, so its rule (PCM only, 48 kHz) is stated.

PCM is ``pcm_s16le`` when the decoder gives 16-bit samples (16-bit PCM,
most FLAC), else ``pcm_s24le`` (MEDIA_IO addendum: the safe master choice;
lossy decoders such as Opus give float).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

from cinescale_post.contracts.errors import InputError, PlanError

log = logging.getLogger(__name__)

AUDIO_MODES = ("copy", "pcm", "none")
_PCM = ("pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_s16be", "pcm_s24be", "pcm_f32le")
# MXF OP1a (FFmpeg's muxer): PCM only, and only 48 kHz.
_MXF_PCM = ("pcm_s16le", "pcm_s24le")


def audio_mode(value: Any) -> str:
    """``True`` -> "copy", ``False`` -> "none", a mode name -> itself.

    Raises ValueError for anything else (``plan.build`` turns it into a
    PlanError naming the key).
    """
    if value is True:
        return "copy"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value.lower() in AUDIO_MODES:
        return value.lower()
    raise ValueError(f"{value!r} is not an audio mode (use one of {', '.join(AUDIO_MODES)})")


@dataclass(frozen=True)
class AudioRoute:
    """What happens to one source audio stream: ``action`` is "copy" or
    "pcm" (``pcm_codec`` then names the PCM written); ``reason`` says why
    a stream is not copied (empty when it is)."""

    index: int
    codec: str
    sample_rate: int
    layout: str
    action: str
    pcm_codec: str | None = None
    reason: str = ""


def _pcm_for(stream) -> str:
    fmt = stream.codec_context.format
    return "pcm_s16le" if fmt is not None and fmt.name in ("s16", "s16p", "u8", "u8p") else "pcm_s24le"


def _container_takes(container_format: str, stream) -> bool:
    """True when FFmpeg's ``container_format`` muxer accepts ``stream`` by packet copy."""
    import av

    out = av.open(io.BytesIO(), "w", format=container_format)
    try:
        out.add_stream_from_template(stream)
        out.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False
    finally:
        try:
            out.close()
        except Exception:  # noqa: BLE001 - a refused header leaves nothing to flush
            pass


def routes_for(streams, container_format: str, mode: str, source: str) -> list[AudioRoute]:
    """One :class:`AudioRoute` per stream of ``streams`` (PyAV audio streams).

    Raises:
        PlanError: MXF with audio that is not 48 kHz (FFmpeg's MXF muxer
            writes no other rate), naming the file and the fix.
    """
    routes = []
    for s in streams:
        ctx = s.codec_context
        name = ctx.name if ctx else "unknown"
        rate = ctx.sample_rate or 0
        layout = ctx.layout.name if ctx and ctx.layout is not None else ""
        if container_format == "mxf":
            if rate != 48000:
                raise PlanError(f"MXF holds 48 kHz audio only; {source} stream #{s.index} ({name}) is {rate} Hz",
                                fix="write a .mov instead, or render without audio (--audio none)")
            copyable = name in _MXF_PCM
            why = f"MXF holds PCM only, not {name}"
        else:
            copyable = _container_takes(container_format, s)
            why = f"{container_format.upper()} cannot hold {name} by packet copy"
        if copyable and (mode == "copy" or name in _PCM):
            routes.append(AudioRoute(s.index, name, rate, layout, "copy"))
        else:
            pcm = _pcm_for(s)
            reason = why if not copyable else f"--audio pcm asks for PCM instead of {name}"
            routes.append(AudioRoute(s.index, name, rate, layout, "pcm", pcm, reason))
    return routes


def plan_audio(path: str, container_format: str, mode: str) -> list[AudioRoute]:
    """The routes a master of ``container_format`` will take for ``path``'s audio.

    ``plan.build`` calls this to validate and to warn before any render
    work; :class:`AudioPassThrough` makes the same decision when it runs.
    """
    import av

    if mode == "none":
        return []
    try:
        with av.open(path) as inp:
            return routes_for(list(inp.streams.audio), container_format, mode, path)
    except av.FFmpegError as exc:
        raise InputError(f"cannot read the audio of {path}: {exc}", fix="check the file, or --audio none") from exc


def route_warning(route: AudioRoute, rate_note: bool = True) -> str:
    """The warning a transcoded stream gets (plan warnings, the manifest)."""
    return (f"audio stream #{route.index} ({route.codec}, {route.sample_rate} Hz, {route.layout or '?'}) "
            f"is written as {route.pcm_codec} at the same rate and layout: {route.reason}"
            + (" (--audio none drops it)" if rate_note else ""))


class _Transcoder:
    """Decodes one stream's packets and encodes PCM frames for ``out_stream``.

    Samples keep the source's rate and layout; the resampler only changes
    the sample format (float/planar -> the PCM's packed integers).
    """

    def __init__(self, out_stream, route: AudioRoute):
        import av

        self.stream = out_stream
        fmt = "s16" if route.pcm_codec == "pcm_s16le" else "s32"
        self.resampler = av.AudioResampler(format=fmt, layout=route.layout or None, rate=route.sample_rate)
        self.rate = route.sample_rate
        self.next_pts: int | None = None

    def packets(self, pkt, shift_s: Fraction) -> Iterator:
        frames = pkt.decode() if pkt is not None else []
        for frame in frames:
            for f in self.resampler.resample(frame):
                yield from self._encode(f, frame, shift_s)
        if pkt is None:
            for f in self.resampler.resample(None):
                yield from self._encode(f, None, shift_s)
            yield from self.stream.encode(None)

    def _encode(self, f, src_frame, shift_s: Fraction) -> Iterator:
        if self.next_pts is None:
            start = Fraction(src_frame.pts) * src_frame.time_base if src_frame is not None and src_frame.pts is not None else Fraction(0)
            self.next_pts = round((start - shift_s) * self.rate)
        # Contiguous sample counts: PCM has no gaps, and rounding each
        # frame's time separately would drift by a sample now and then.
        f.pts = self.next_pts
        f.time_base = Fraction(1, self.rate)
        self.next_pts += f.samples
        yield from self.stream.encode(f)


class AudioPassThrough:
    """Copies (or transcodes to PCM) a source's audio streams, interleaved by time.

    ``add_streams(out)`` must run before the first packet is muxed.
    ``mux_until(seconds)`` muxes every audio packet that starts before
    ``seconds`` (output time); ``finish()`` muxes the rest. Copied packets
    without a dts (the demuxer's flush packets) are skipped; payload and pts
    are kept, so AAC priming (first pts -1024) survives. ``shift_s`` moves
    audio by the same amount the video was rebased (set before the first
    ``mux_until``), keeping sync. ``mode`` is one of :data:`AUDIO_MODES`
    (``none`` gives no streams); ``routes`` says what each stream gets.
    """

    def __init__(self, path: str, container_format: str, shift_s: Fraction = Fraction(0), mode: str = "copy"):
        import av

        mode = audio_mode(mode)
        try:
            self._inp = av.open(path)
        except OSError as exc:
            raise InputError(f"cannot read the source audio from {path}: {exc}",
                             fix="check the source file still exists and is readable") from exc
        try:
            streams = list(self._inp.streams.audio) if mode != "none" else []
            self.routes = routes_for(streams, container_format, mode, path)
        except BaseException:
            self._inp.close()
            raise
        for r in self.routes:
            if r.action == "pcm":
                log.info("%s", route_warning(r, rate_note=False))
        self._streams = streams
        self.shift_s = shift_s
        self._map: dict[int, Any] = {}
        self._transcoders: dict[int, _Transcoder] = {}
        self._packets: Iterator | None = None
        self._pending = None

    @property
    def streams(self) -> int:
        return len(self._streams)

    def add_streams(self, out) -> None:
        for s, route in zip(self._streams, self.routes):
            if route.action == "copy":
                self._map[s.index] = out.add_stream_from_template(s)
            else:
                o = out.add_stream(route.pcm_codec, rate=route.sample_rate,
                                   layout=route.layout or None)
                o.time_base = Fraction(1, route.sample_rate)
                self._map[s.index] = o
                self._transcoders[s.index] = _Transcoder(o, route)

    def _next(self):
        if self._packets is None:
            self._packets = self._inp.demux(*self._streams) if self._streams else iter(())
        for pkt in self._packets:
            if pkt.dts is None and pkt.stream.index not in self._transcoders:
                continue
            if pkt.size == 0 and pkt.pts is None:
                continue  # end-of-stream marker; transcoders are flushed in finish()
            return pkt
        return None

    def mux_until(self, out, seconds: Fraction | None) -> None:
        while True:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    return
            pkt = self._pending
            t = pkt.pts if pkt.pts is not None else pkt.dts
            start = Fraction(t or 0) * pkt.time_base - self.shift_s
            if seconds is not None and start >= seconds:
                return
            self._pending = None
            tr = self._transcoders.get(pkt.stream.index)
            if tr is not None:
                for out_pkt in tr.packets(pkt, self.shift_s):
                    out.mux(out_pkt)
                continue
            if self.shift_s:
                delta = round(self.shift_s / pkt.time_base)
                pkt.dts -= delta
                if pkt.pts is not None:
                    pkt.pts -= delta
            pkt.stream = self._map[pkt.stream.index]
            out.mux(pkt)

    def finish(self, out) -> None:
        self.mux_until(out, None)
        for tr in self._transcoders.values():
            for out_pkt in tr.packets(None, self.shift_s):
                out.mux(out_pkt)

    def close(self) -> None:
        self._inp.close()
