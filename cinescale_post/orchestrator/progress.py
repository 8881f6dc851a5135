"""Progress events and the sinks that show them.

The library never prints; it emits events to a sink. Events and their fields
(the JSON-lines protocol of ``--progress json``, documented in
docs/progress.md):

* ``start``: total, done (already complete from an earlier run), output, backend
* ``frame``: frame, done, total, pct, fps, eta_s, peak_rss_mb
* ``chunk_done``: chunk, frames, files, seconds
* ``warning``: message
* ``error``: message, exit_code
* ``finished``: status, done, total, seconds, outputs, peak_rss_mb

Every JSON line carries ``event`` and ``time`` (Unix seconds) and is flushed.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any, TextIO


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB); ru_maxrss is KiB on Linux."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


class Sink:
    """Base sink: keeps counters and derives fps/ETA for subclasses."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.done = 0
        self._t0 = time.monotonic()
        self._rendered = 0

    def emit(self, event: str, **fields: Any) -> None:
        if event == "start":
            self.total = fields.get("total", 0)
            self.done = fields.get("done", 0)
            self._t0 = time.monotonic()
            self._rendered = 0
        elif event == "frame":
            self.done += 1
            self._rendered += 1
            elapsed = max(time.monotonic() - self._t0, 1e-9)
            fps = self._rendered / elapsed
            remaining = max(self.total - self.done, 0)
            fields.update(done=self.done, total=self.total,
                          pct=round(100.0 * self.done / self.total, 2) if self.total else 100.0,
                          fps=round(fps, 4), eta_s=round(remaining / fps, 1) if fps > 0 else None,
                          peak_rss_mb=peak_rss_mb())
        elif event == "finished":
            fields.setdefault("peak_rss_mb", peak_rss_mb())
        self.show(event, fields)

    def show(self, event: str, fields: dict) -> None:  # pragma: no cover - overridden
        pass

    def close(self) -> None:
        pass


class NullSink(Sink):
    pass


class JsonSink(Sink):
    """One JSON object per line on stdout, flushed per line."""

    def show(self, event, fields):
        self.stream.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str) + "\n")
        self.stream.flush()


class PlainSink(Sink):
    """``PROGRESS 12.5%`` lines for regex-based farm parsers (Deadline, OpenCue)."""

    def show(self, event, fields):
        if event == "start":
            pct = 100.0 * self.done / self.total if self.total else 100.0
            self.stream.write(f"PROGRESS {pct:.1f}%\n")
        elif event == "frame":
            self.stream.write(f"PROGRESS {fields['pct']:.1f}%\n")
        elif event == "warning":
            self.stream.write(f"WARNING {fields['message']}\n")
        elif event == "error":
            self.stream.write(f"ERROR {fields['message']}\n")
        elif event == "finished":
            self.stream.write(f"FINISHED {fields['status']} {self.done}/{self.total}\n")
        self.stream.flush()


class BarSink(Sink):
    """A tqdm progress bar with ETA on stderr, for people at a terminal."""

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)
        self.bar = None

    def show(self, event, fields):
        from tqdm import tqdm

        if event == "start":
            self.bar = tqdm(total=self.total, initial=self.done, unit="frame", file=self.stream,
                            dynamic_ncols=True, desc=str(fields.get("output", ""))[-40:])
        elif event == "frame" and self.bar is not None:
            self.bar.update(1)
        elif event in ("warning", "error"):
            msg = f"{event}: {fields['message']}"
            if self.bar is not None:
                self.bar.write(msg, file=self.stream)
            else:
                self.stream.write(msg + "\n")
        elif event == "finished":
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_sink(mode: str, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> Sink:
    """``mode``: "json", "plain", "bar", "none", or "auto" (bar on a terminal,
    otherwise none)."""
    if mode == "auto":
        mode = "bar" if (stderr or sys.stderr).isatty() else "none"
    if mode == "json":
        return JsonSink(stdout)
    if mode == "plain":
        return PlainSink(stdout)
    if mode == "bar":
        return BarSink(stderr)
    return NullSink(stdout)
