"""Frame-sequence patterns: one spelling inside, every studio spelling outside.

Accepted tokens for the frame number (reference/MEDIA_IO.md section 5.1):
``####`` (Nuke: one ``#`` per digit, *not* fileseq's 4-per-#), ``@@@@``,
``%04d``, ``$F4`` and ``{frame:04d}``. The frame token must stand in the last
path component; version numbers such as ``_v001`` are never taken for frames
because only the explicit token is a frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_TOKENS = [
    (re.compile(r"%0?(\d*)d"), lambda m: int(m.group(1) or 1)),
    (re.compile(r"#+"), lambda m: len(m.group(0))),
    (re.compile(r"@+"), lambda m: len(m.group(0))),
    (re.compile(r"\$F(\d*)"), lambda m: int(m.group(1) or 1)),
    (re.compile(r"\{frame(?::0?(\d+)d)?\}"), lambda m: int(m.group(1) or 1)),
]

IMAGE_SUFFIXES = (".exr", ".png", ".tif", ".tiff", ".dpx", ".jpg", ".jpeg")


@dataclass(frozen=True)
class SeqPattern:
    """``directory/head<frame padded to pad>tail``."""

    directory: str
    head: str
    pad: int
    tail: str

    @property
    def printf(self) -> str:
        return os.path.join(self.directory, f"{self.head}%0{self.pad}d{self.tail}")

    @property
    def hashes(self) -> str:
        return os.path.join(self.directory, f"{self.head}{'#' * self.pad}{self.tail}")

    @property
    def suffix(self) -> str:
        return Path(self.tail).suffix.lower() or Path(self.tail).name.lower()

    def path(self, frame: int) -> str:
        return os.path.join(self.directory, f"{self.head}{frame:0{self.pad}d}{self.tail}")

    def scan(self) -> list[int]:
        """Frame numbers present on disk, ascending (strict: padding must match,
        or be longer without a leading zero for frames past the padding)."""
        rx = re.compile(rf"^{re.escape(self.head)}(-?\d+){re.escape(self.tail)}$")
        found = []
        try:
            names = os.listdir(self.directory or ".")
        except OSError:
            return []
        for name in names:
            m = rx.match(name)
            if not m:
                continue
            digits = m.group(1).lstrip("-")
            if len(digits) == self.pad or (len(digits) > self.pad and not digits.startswith("0")):
                found.append(int(m.group(1)))
        return sorted(found)


def is_pattern(path: str) -> bool:
    return parse_pattern(path) is not None


def parse_pattern(path: str) -> SeqPattern | None:
    """Parse a sequence pattern; None when ``path`` has no frame token.

    >>> parse_pattern("/x/sh010_v001.####.exr").printf
    '/x/sh010_v001.%04d.exr'
    >>> parse_pattern("/x/a.$F6.dpx").pad
    6
    """
    directory, name = os.path.split(path)
    best = None
    for rx, pad_of in _TOKENS:
        for m in rx.finditer(name):
            if best is None or m.start() > best[0].start():  # the last token wins
                best = (m, pad_of(m))
    if best is None:
        return None
    m, pad = best
    return SeqPattern(directory, name[: m.start()], pad, name[m.end():])


def missing_frames(numbers: list[int]) -> list[int]:
    """Numbers absent between the first and the last of ``numbers``."""
    if not numbers:
        return []
    have = set(numbers)
    return [n for n in range(numbers[0], numbers[-1] + 1) if n not in have]


def compress_ranges(numbers: list[int]) -> str:
    """``[1,2,3,7,9,10]`` -> ``"1-3,7,9-10"`` (for messages)."""
    import fileseq

    return str(fileseq.FrameSet(numbers)) if numbers else ""
