"""Executors run chunk tasks. The render loop only ever talks to this
interface, so a distributed executor (one chunk per worker) can be added
without touching the loop: each window is rendered by one chunk (its owner,
``windows.assign_windows``), the frames it shares with other chunks are handed
on (``seams.py``) and published by whichever finishes last, and all
randomness is derived from frame numbers, so chunks may run in any order or
at the same time."""

from __future__ import annotations

import abc
from typing import Callable, Iterable, Iterator

from cinescale_post.contracts.errors import UnknownNameError
from cinescale_post.pipeline.windows import Chunk


class Executor(abc.ABC):
    """Runs chunk tasks; chosen with ``--executor NAME``.

    ``run`` gets both forms of the work:

    * ``work(chunk) -> dict``: renders in *this* process with the already
      loaded backend and open reader, emitting ``frame`` events itself
      (what a local executor calls);
    * ``task(chunk) -> dict``: a picklable callable
      (``functools.partial(run.render_chunk_task, plan)``) that renders one
      chunk from scratch in any process — a fresh host, backend and reader —
      for distributed executors. Results carry ``frames``; a distributed
      executor emits ``sink.emit("frame", frame=f)`` for each when a result
      comes back, so progress consumers see the same protocol.

    Both publish files and log units exactly like the local path, so resume,
    manifest and assemble do not depend on the executor.
    """

    name = ""
    #: True when the executor needs the backend loaded in this process.
    in_process = True

    @abc.abstractmethod
    def run(self, chunks: Iterable[Chunk], *, work: Callable[[Chunk], dict], task: Callable[[Chunk], dict],
            sink) -> Iterator[dict]:
        """Run every chunk; yield each result as it ends. An exception from a
        chunk that cannot be retried propagates."""


class LocalExecutor(Executor):
    """In-process, one chunk after another, in frame order."""

    name = "local"

    def run(self, chunks, *, work, task, sink):
        for chunk in chunks:
            yield work(chunk)


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor}
# Executors in their own modules, imported on first use (that module imports
# this one for the base class; ray itself is imported only when a render uses it).
_LAZY = {"ray": ("cinescale_post.orchestrator.ray_executor", "RayExecutor")}


def get_executor(name: str, **options) -> Executor:
    """``name`` is "local", "ray" (needs the ``[ray]`` extra when a render
    runs) or one registered in ``EXECUTORS``; ``options`` go to its constructor."""
    if name not in EXECUTORS and name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        EXECUTORS[name] = getattr(importlib.import_module(mod), attr)
    if name not in EXECUTORS:
        names = sorted(set(EXECUTORS) | set(_LAZY))
        raise UnknownNameError(f"unknown executor {name!r}", fix=f"use one of: {', '.join(names)}")
    return EXECUTORS[name](**options)
