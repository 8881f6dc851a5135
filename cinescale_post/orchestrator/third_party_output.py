"""What third-party libraries print while a model loads, made ours.

diffusers, transformers and huggingface_hub draw their own tqdm bars on
stderr ("Loading pipeline components...", "Loading weights") and log warnings
through handlers of their own ("... float16 cannot run on cpu"), whatever
``--progress`` says. Inside :func:`routed`:

* every tqdm bar created is disabled (tqdm's own ``disable``; no second bar
  under ours) and becomes one INFO record ``<desc> (<total> steps)``;
* records of the libraries' loggers, ``warnings.warn`` calls, and lines
  written to ``sys.stderr`` become INFO records of ``cinescale_post.libraries``
  (shown with ``cinescale -v``; a library ERROR stays a WARNING);
* :class:`LibraryOutput` counts them, for the manifest.

Everything is restored on exit, also when loading raises. A library that
configures its stderr handler for the first time inside the block binds it
to the routed stream; after the block that stream writes to the real stderr.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from dataclasses import asdict, dataclass

log = logging.getLogger("cinescale_post.libraries")

#: Loggers of the libraries model backends load with.
LIBRARIES = ("diffusers", "transformers", "huggingface_hub", "accelerate", "safetensors", "torch")


@dataclass
class LibraryOutput:
    """What the libraries tried to show during one :func:`routed` block."""

    progress_bars: int = 0
    warnings: int = 0
    messages: int = 0  # log records below WARNING and stray stderr lines

    def to_dict(self) -> dict:
        return asdict(self)


class _Lines(io.TextIOBase):
    """A text stream that turns complete lines (``\\n`` or tqdm's ``\\r``)
    into log records while active, and writes through to ``real`` after."""

    def __init__(self, real, counts: LibraryOutput):
        super().__init__()
        self.real, self.counts, self.active, self._buf = real, counts, True, ""

    def write(self, s: str) -> int:
        if not self.active:
            return self.real.write(s)
        self._buf += s
        *lines, self._buf = self._buf.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self.counts.messages += 1
                log.info("%s", line.strip())
        return len(s)

    def flush(self) -> None:
        if not self.active:
            self.real.flush()

    def isatty(self) -> bool:
        return False  # libraries that ask draw no live bars

    @property
    def encoding(self):
        return getattr(self.real, "encoding", "utf-8")

    def end(self) -> None:
        if self._buf.strip():
            self.counts.messages += 1
            log.info("%s", self._buf.strip())
        self._buf, self.active = "", False


class _Route(logging.Handler):
    def __init__(self, counts: LibraryOutput):
        super().__init__(logging.DEBUG)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.counts.warnings += 1
        else:
            self.counts.messages += 1
        level = logging.WARNING if record.levelno >= logging.ERROR else logging.INFO
        log.log(level, "%s: %s", record.name, record.getMessage())


@contextlib.contextmanager
def _tqdm_quiet(counts: LibraryOutput):
    try:
        from tqdm import std
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        yield
        return
    original = std.tqdm.__init__

    def init(self, *args, **kwargs):
        kwargs["disable"] = True
        original(self, *args, **kwargs)
        counts.progress_bars += 1
        desc = kwargs.get("desc") or (args[1] if len(args) > 1 else None) or "progress"
        total = kwargs.get("total")
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        log.info("%s%s", str(desc).rstrip(": "), f" ({total} steps)" if total else "")

    std.tqdm.__init__ = init
    try:
        yield
    finally:
        std.tqdm.__init__ = original


@contextlib.contextmanager
def routed():
    """Route library bars, warnings and log records to our log while the
    block runs; yields the :class:`LibraryOutput` that counts them."""
    counts = LibraryOutput()
    route = _Route(counts)
    saved = {}
    for name in LIBRARIES:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.propagate)
        if lg.handlers or name not in ("diffusers", "transformers", "huggingface_hub"):
            # Configured already (or never configures itself): our handler only.
            # Unconfigured self-configuring libraries bind their handler to the
            # routed stderr below when they first log.
            lg.handlers = [route]
            lg.propagate = False
    stream = _Lines(sys.stderr, counts)

    def show(message, category, filename, lineno, file=None, line=None):
        counts.warnings += 1
        log.info("%s: %s (%s:%s)", category.__name__, message, filename, lineno)

    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(stream), _tqdm_quiet(counts):
            warnings.showwarning = show
            yield counts
    finally:
        stream.end()
        for name, (handlers, propagate) in saved.items():
            lg = logging.getLogger(name)
            added = [h for h in lg.handlers if h is not route and h not in handlers]
            if route in lg.handlers or added:
                lg.handlers = handlers + added
                lg.propagate = propagate if not added else lg.propagate
