"""Error hierarchy: every error names what was wrong and how to fix it.

Each class also inherits a built-in exception (PyAV's habit), so callers that
catch ``ValueError`` or ``OSError`` keep working, and each maps to exactly one
process exit code of the CLI contract (see ``EXIT_CODES`` and the architecture
page, section 6). The CLI converts them in one place (``cli.main``).
"""

from __future__ import annotations


class CinescaleError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class UsageError(CinescaleError, ValueError):
    """Bad arguments, unknown preset/backend/codec/key, invalid plan value."""

    exit_code = 2


class PlanError(UsageError):
    """A preset or override failed validation in ``plan.build``."""


class UnknownNameError(UsageError, KeyError):
    """A name (preset, backend, codec, upscaler...) that nothing registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class InputError(CinescaleError, OSError):
    """Input missing, not media, truncated, empty, or a sequence with gaps."""

    exit_code = 3


class OutputError(CinescaleError, OSError):
    """Output location not writable, disk full, or output refuses to mix."""

    exit_code = 4


class OutOfMemoryError(CinescaleError, MemoryError):
    """Device memory exhausted even at the smallest tile setting."""

    exit_code = 5


class WeightsError(CinescaleError, FileNotFoundError):
    """Model weights missing or unreadable."""

    exit_code = 6


class TemporaryFailure(CinescaleError, RuntimeError):
    """Safe to retry (EX_TEMPFAIL)."""

    exit_code = 75


class Interrupted(CinescaleError):
    """Stopped by SIGINT (130) or SIGTERM (143) after the current frame."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.exit_code = 130 if signum == signal.SIGINT else 143
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}",
            fix="run the same command again to resume; finished frames are kept",
        )


class PluginError(CinescaleError, RuntimeError):
    """A plugin raised while doing its work; names the plugin."""

    exit_code = 1


EXIT_CODES = {
    0: "done",
    1: "internal error",
    2: "usage error",
    3: "input missing or undecodable",
    4: "output not writable / disk full",
    5: "out of GPU memory at the smallest tile",
    6: "model weights missing",
    75: "temporary failure, safe to retry",
    130: "interrupted by SIGINT",
    143: "interrupted by SIGTERM",
}
