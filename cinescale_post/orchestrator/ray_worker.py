"""The worker side of ``--executor ray``: the actor that keeps one loaded
backend across chunks, and what it reports for a retried chunk
(``orchestrator.ray_executor`` is the driver side)."""

from __future__ import annotations

import os
from typing import Any

from cinescale_post.contracts.errors import UsageError


def _stdout_to_stderr() -> None:
    """Send this worker's stdout (fd 1, so C libraries too) to its stderr.
    Ray forwards worker stdout to the *driver's stdout*, which carries the
    JSON progress protocol; a plugin's stray print must not corrupt it."""
    global _REDIRECTED
    if not _REDIRECTED:
        try:
            import sys

            sys.stdout.flush()
            os.dup2(2, 1)
        except OSError:
            pass
        _REDIRECTED = True


_REDIRECTED = False


def complete_chunk_info(task, chunk, info: dict) -> dict:
    """A retried task skips frames its lost predecessor already published and
    returns only the rest; the driver needs every frame and file of the chunk
    (frame events, outputs), so add those found in the manifest."""
    if set(info["frames"]) >= set(chunk.frames):
        return info
    plan = (getattr(task, "args", None) or (None,))[0]
    output = getattr(getattr(plan, "output", None), "path", None)
    if output is None:
        return info
    from cinescale_post.orchestrator.manifest import Manifest

    manifest = Manifest(output)
    mine = set(chunk.frames)
    files = set(info["files"])
    for u in manifest.verified_units().values():
        if u.first in mine and u.last in mine:
            files.add(str(manifest.root / u.file))  # the path the local executor reports
    return {**info, "frames": list(chunk.frames), "files": sorted(files),
            "resumed": sorted(mine - set(info["frames"]))}


def worker_args(task) -> tuple[Any, dict | None, dict]:
    """(plan, schedule, host options) of ``task`` (``functools.partial(
    run.render_chunk_task, plan, schedule=..., **options)``): an actor is
    built with the host options and given the plan and schedule with each
    chunk."""
    args = tuple(getattr(task, "args", ()) or ())
    kwargs = dict(getattr(task, "keywords", {}) or {})
    if not args:
        raise UsageError("the ray executor needs the render's chunk task (functools.partial of "
                         "run.render_chunk_task with the plan)")
    schedule = kwargs.pop("schedule", None)
    return args[0], schedule, kwargs


class ChunkActor:
    """A Ray actor holding one :class:`~cinescale_post.orchestrator.chunk_task.ChunkWorker`
    (the backend loaded once, kept across chunks and, where it can serve
    them, across renders). Its process title names the chunk it is
    rendering (``ray::cinescale-chunk-A-B``), as the task executor's did, so
    operators can see (and kill) what runs where."""

    def __init__(self, progress=None, **options):
        _stdout_to_stderr()
        from cinescale_post.orchestrator.chunk_task import ChunkWorker

        self.worker = ChunkWorker(**options)
        if progress is not None:  # a ray.util.queue.Queue the drivers drain while chunks run
            self.worker.events.forward = lambda frame: progress.put_nowait((self.worker.plan.output.path, frame))

    def run_chunk(self, chunk, plan, schedule=None) -> dict:
        _set_title(f"ray::cinescale-chunk-{chunk.id}")
        try:
            return self.worker.run_chunk(chunk, plan, schedule)
        finally:
            _set_title("ray::cinescale-worker")

    def poll(self) -> list[int]:
        return self.worker.poll()

    def stop(self) -> None:
        self.worker.stop()


def _set_title(title: str) -> None:
    try:
        import ray._raylet

        ray._raylet.setproctitle(title)
    except Exception:  # noqa: BLE001 - a title is a convenience
        pass


__all__ = ["ChunkActor", "complete_chunk_info"]
