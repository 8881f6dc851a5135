"""Progress events and the sinks that show them.

The library never prints; it emits events to a sink. Events and their fields
(the JSON-lines protocol of ``--progress json``, documented in
docs/progress.md):

* ``start``: total, done (already complete from an earlier run), output, backend;
  output_as_written too when the user spelled a sequence otherwise (``####``)
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
        #: spelling.OutputSpelling: messages and the bar name the output as the user wrote it
        self.spelling = None

    def name_output(self, internal: str, written: str | None) -> None:
        """Show ``internal`` (the plan's printf pattern) as ``written``."""
        from cinescale_post.orchestrator.spelling import OutputSpelling

        self.spelling = OutputSpelling.of(internal, written)

    def emit(self, event: str, **fields: Any) -> None:
        if self.spelling is not None:
            if "message" in fields:
                fields["message"] = self.spelling.text(fields["message"])
            if event == "start" and fields.get("output") == self.spelling.internal:
                # the printf form stays in "output" (machine readers may expand it)
                fields["output_as_written"] = self.spelling.written
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


class QuietSink(Sink):
    """``--progress none``: no progress and no summary; warnings still reach
    stderr (errors are printed once, by the CLI, with their exit code)."""

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)

    def show(self, event, fields):
        if event == "warning":
            self.stream.write(f"warning: {fields['message']}\n")
            self.stream.flush()


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
            label = fields.get("output_as_written") or fields.get("output", "")
            self.bar = tqdm(total=self.total, initial=self.done, unit="frame", file=self.stream,
                            dynamic_ncols=True, desc=str(label)[-40:])
        elif event == "frame" and self.bar is not None:
            self.bar.update(1)
        elif event == "warning":
            msg = f"warning: {fields['message']}"
            if self.bar is not None:
                self.bar.write(msg, file=self.stream)
            else:
                self.stream.write(msg + "\n")
        elif event in ("error", "finished"):
            # an error is raised after its event: the CLI prints it once, with its fix and exit code
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
    return QuietSink(stderr)


def summary_line(summary, plan, spelling=None) -> str:
    """The one line a person reads when a render ends (``bar``/``auto``):
    the output as the user wrote it, how many files this run wrote, and
    "nothing to do" when everything was already rendered."""
    out = plan.output
    shown = spelling.text(out.path) if spelling is not None else out.path
    files = list(summary.outputs)
    if out.kind == "movie" or not files:
        where = files[0] if len(files) == 1 else shown
    else:
        where = shown
    line = f"{summary.status}: {summary.frames_done}/{summary.frames_total} frames -> {where}"
    already = summary.frames_total and summary.status == "finished" and summary.frames_done == summary.frames_total
    if already and (not files or summary.skipped == summary.frames_total):
        return f"{line} (nothing to do: every frame was already rendered)"
    if out.kind != "movie" and files:
        return f"{line} ({len(files)} file{'s' if len(files) != 1 else ''} written)"
    if len(files) > 1:
        return f"{line} (+{len(files) - 1} files)"
    return line
