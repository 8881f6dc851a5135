"""Naming an output the way the user wrote it.

Inside, a frame sequence is always the printf pattern the writers and the
manifest use (``tt/f.%04d.exr``, ``plan.output.path``). People wrote
``tt/f.####.exr`` (or ``@@@@``, ``$F4``, ``{frame:04d}``, ``%04d``: whatever
``media.sequence.parse_pattern`` accepts), and a message that answers with
another spelling reads like a different file. So the display layer (the
progress sinks, the CLI's summary and error lines) translates the internal
form back to the user's own; nothing inside changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cinescale_post.media.sequence import parse_pattern


@dataclass(frozen=True)
class OutputSpelling:
    """``internal`` (printf) -> ``written`` (as typed), also as absolute paths."""

    internal: str
    written: str

    @classmethod
    def of(cls, internal: str, written: str | None) -> "OutputSpelling | None":
        """None when there is nothing to translate (a movie, the same
        spelling, or ``written`` is not the same pattern)."""
        if not written or written == internal:
            return None
        pat = parse_pattern(written)
        if pat is None or pat.printf != internal:
            return None
        return cls(internal, written)

    def pairs(self) -> list[tuple[str, str]]:
        out = []
        ai = os.path.abspath(self.internal)
        if ai != self.internal:  # messages built from abspath(plan.output.path)
            aw = os.path.join(os.path.dirname(ai), os.path.basename(self.written))
            out.append((ai, aw))
        out.append((self.internal, self.written))
        return out

    def text(self, value):
        """``value`` with every internal spelling replaced (non-strings unchanged)."""
        if not isinstance(value, str):
            return value
        for a, b in self.pairs():
            value = value.replace(a, b)
        return value


def respell_error(exc: BaseException, spelling: OutputSpelling | None) -> BaseException:
    """Rewrite an exception's message (and its ``fix``) in the user's
    spelling, in place: the type, exit code and traceback stay."""
    if spelling is None or not exc.args:
        return exc
    exc.args = (spelling.text(exc.args[0]), *exc.args[1:])
    if isinstance(getattr(exc, "fix", None), str):
        exc.fix = spelling.text(exc.fix)
    return exc


#: the manifest field holding the output as the user typed it at render start
#: (only when that differs from the printf form in ``plan.output.path``)
MANIFEST_KEY = "output_as_written"


def manifest_fields(spelling: OutputSpelling | None) -> dict:
    """What a render records in its manifest header: commands that have only
    the manifest (``assemble``, ``qc``, the editorial step) answer with it."""
    return {MANIFEST_KEY: spelling.written} if spelling is not None else {}


def recorded(data: dict | None, output_path: str) -> OutputSpelling | None:
    """The spelling a manifest recorded, for ``output_path``: the output where
    it lies now (next to its manifest: a render moved or mounted elsewhere
    still resolves, so only the file name of the recorded spelling counts)."""
    written = (data or {}).get(MANIFEST_KEY)
    if not isinstance(written, str) or not written:
        return None
    return OutputSpelling.of(output_path, os.path.join(os.path.dirname(output_path), os.path.basename(written)))


def as_written(data: dict | None, output_path: str) -> str:
    """``output_path`` as the user typed it at render time (else unchanged)."""
    spelling = recorded(data, output_path)
    return spelling.written if spelling is not None else output_path
