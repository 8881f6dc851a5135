"""Audio pass-through: copy a source's audio streams by packet (bit-exact,
AAC priming kept), interleaved with the video by time."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterator

from ..errors import PlanError

# Containers that take only some audio codecs by packet copy.
_AUDIO_OK = {"mxf": {"pcm_s16le", "pcm_s24le"}}


class AudioPassThrough:
    """Copies a source's audio streams by packet, interleaved by time.

    ``add_streams(out)`` must run before the first packet is muxed.
    ``mux_until(seconds)`` muxes every audio packet that starts before
    ``seconds`` (output time); ``finish()`` muxes the rest. Packets without a
    dts (the demuxer's flush packets) are skipped; payload and pts are kept,
    so AAC priming (first pts -1024) survives. ``shift_s`` moves audio by the
    same amount the video was rebased (set before the first ``mux_until``),
    keeping sync.
    """

    def __init__(self, path: str, container_format: str, shift_s: Fraction = Fraction(0)):
        import av

        try:
            self._inp = av.open(path)
        except OSError as exc:
            from ..errors import InputError

            raise InputError(f"cannot read the source audio from {path}: {exc}",
                             fix="check the source file still exists and is readable") from exc
        self._streams = list(self._inp.streams.audio)
        allowed = _AUDIO_OK.get(container_format)
        for s in self._streams:
            name = s.codec_context.name if s.codec_context else "unknown"
            if allowed is not None and name not in allowed:
                self._inp.close()
                raise PlanError(
                    f"{container_format.upper()} cannot carry {name} audio by packet copy (source {path})",
                    fix="write a .mov instead, or render without audio (--audio none)")
        self.shift_s = shift_s
        self._map: dict[int, Any] = {}
        self._packets: Iterator | None = None
        self._pending = None

    @property
    def streams(self) -> int:
        return len(self._streams)

    def add_streams(self, out) -> None:
        for s in self._streams:
            self._map[s.index] = out.add_stream_from_template(s)

    def _next(self):
        if self._packets is None:
            self._packets = self._inp.demux(*self._streams) if self._streams else iter(())
        for pkt in self._packets:
            if pkt.dts is None:
                continue
            return pkt
        return None

    def mux_until(self, out, seconds: Fraction | None) -> None:
        while True:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    return
            pkt = self._pending
            start = Fraction(pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base - self.shift_s
            if seconds is not None and start >= seconds:
                return
            if self.shift_s:
                delta = round(self.shift_s / pkt.time_base)
                pkt.dts -= delta
                if pkt.pts is not None:
                    pkt.pts -= delta
            pkt.stream = self._map[pkt.stream.index]
            out.mux(pkt)
            self._pending = None

    def finish(self, out) -> None:
        self.mux_until(out, None)

    def close(self) -> None:
        self._inp.close()
