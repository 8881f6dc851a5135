"""What the conformance suite reports, and how one check's verdict is kept
apart from the backend raising (``testing.conformance``)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cinescale_post.contracts.errors import CinescaleError

CLEAN_ERRORS = (ValueError, TypeError, RuntimeError, CinescaleError)


class ConformanceError(AssertionError):
    """A backend failed one or more checks; the message lists every failure."""


@dataclass
class ConformanceReport:
    """What :func:`run_backend_conformance` found.

    ``checks``: ``[(name, "pass" | "fail" | "skip", detail)]`` in the order run.
    ``warnings``: things that work but deserve a look. ``seeded``: whether a
    different seed changed the rendered pixels (None: not checked).
    """

    backend: str
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seeded: bool | None = None

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return [c for c in self.checks if c[1] == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def passed(self, name: str) -> bool:
        return any(n == name and s == "pass" for n, s, _ in self.checks)

    def __str__(self) -> str:
        lines = [f"conformance of backend {self.backend!r}:"]
        lines += [f"  {s.upper():<4} {n}: {d}" for n, s, d in self.checks]
        lines += [f"  WARN {w}" for w in self.warnings]
        return "\n".join(lines)


class Fail(Exception):
    """A check's own verdict (as opposed to the backend raising)."""


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise Fail(message)


def clean(exc: BaseException) -> bool:
    return isinstance(exc, CLEAN_ERRORS) and bool(str(exc).strip())


class Runner:
    def __init__(self, backend: Any, report: ConformanceReport, skip: Sequence[str]):
        self.backend, self.report, self.skip = backend, report, set(skip)

    def run(self, name: str, fn: Callable[[], str | None]) -> bool:
        if name in self.skip:
            self.report.checks.append((name, "skip", "skipped by the caller"))
            return False
        try:
            detail = fn() or "ok"
        except Fail as exc:
            self.report.checks.append((name, "fail", str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - report the backend's crash as a failure
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.report.checks.append((name, "fail", f"raised {tb}"))
            return False
        self.report.checks.append((name, "pass", detail))
        return True
