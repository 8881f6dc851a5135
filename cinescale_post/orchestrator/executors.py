"""Executors run chunk tasks. The render loop only ever talks to this
interface, so a distributed executor (one chunk per worker) can be added
without touching the loop: chunks are independent by construction (every
window that touches a chunk's frames is rendered inside that chunk, and all
randomness is derived from frame numbers)."""

from __future__ import annotations

import abc
from typing import Callable, Iterable, Iterator

from ..errors import UnknownNameError
from .windows import Chunk


class Executor(abc.ABC):
    name = ""

    @abc.abstractmethod
    def run(self, chunks: Iterable[Chunk], work: Callable[[Chunk], dict]) -> Iterator[dict]:
        """Run ``work(chunk)`` for every chunk; yield each result as it ends.
        Must stop (and let the exception propagate) when ``work`` raises."""


class LocalExecutor(Executor):
    """In-process, one chunk after another, in frame order."""

    name = "local"

    def run(self, chunks, work):
        for chunk in chunks:
            yield work(chunk)


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor}


def get_executor(name: str) -> Executor:
    if name not in EXECUTORS:
        raise UnknownNameError(f"unknown executor {name!r}", fix=f"use one of: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
