"""``--executor ray``: one Ray actor per GPU (or worker slot), chunks handed out to them.

Each actor holds a :class:`~cinescale_post.orchestrator.chunk_task.ChunkWorker`: it
builds the host, loads the backend and opens the reader once, then renders
chunk after chunk as the driver hands them out (the next one to whichever
actor is free), so a 14B model loads once per GPU, not once per chunk
(``model loads = actors``). The actors live in a
:class:`~cinescale_post.orchestrator.ray_pool.RayPool`: the render's own, or
one shared by several renders at once (``render_many``: a conform's shots),
whose actors switch between shots without loading again. Chunks publish files and log units exactly like
the local executor (per-process unit logs, temporary names + rename), so the
manifest, resume, ``--verify`` and assemble work unchanged, and the output is
byte-identical to a local render (the layout and every seed derive from frame
numbers, never from which worker ran what). Each window is rendered by one
chunk; frames it shares with a chunk on another actor are handed on through
the manifest (``seams.py``) and published by whichever finishes last.

Failures:

* an actor or node that dies (``kill -9``, out of host memory, a lost node)
  is replaced by a new actor (which loads the model) and its chunk is handed
  out again; an application error that may pass on another try (a crashed
  plugin -- its actor is replaced too --, ``TemporaryFailure``, out of GPU
  memory) hands the chunk out again, up to ``max_retries`` times per chunk;
  the retry resumes, skipping frames the lost attempt already published.
  Each retry is a ``warning`` progress event;
* errors that would fail the same way again (usage 2, input 3, output 4,
  weights 6) stop the render at once with that error and its exit code;
* SIGINT/SIGTERM on the driver ask the running chunks to stop after their
  current frame (writers remove their temporaries, as a local render does),
  then the actors are killed and the render exits 130/143.

Ray restarts and retries nothing on its own here (``max_restarts=0``): every
retry goes through the driver, so it is counted, bounded, and reported.

Progress: the driver drains the pool's frame queue every ``poll_s`` seconds, so
``frame`` events stream while a chunk runs (each frame once, in publication
order), and each chunk ends with its ``chunk_done``. Worker output goes to
the driver's stderr; stdout carries only the progress protocol
(``--progress json`` stays parseable).

Requirements on a cluster: every node has the same cinescale-post, plugins
and weights paths, and sees the input and output paths (shared storage;
absolute paths). ``ray`` is imported only when a render uses this executor.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import time
from typing import Any

from cinescale_post.contracts.errors import CinescaleError, TemporaryFailure, UsageError
from cinescale_post.orchestrator.executors import Executor
from cinescale_post.orchestrator.ray_pool import RayPool, import_ray
from cinescale_post.orchestrator.ray_worker import complete_chunk_info, worker_args

log = logging.getLogger(__name__)

#: Exit codes of errors that fail the same way on any worker: never retried.
PERMANENT_EXIT_CODES = frozenset({2, 3, 4, 6, 130, 143})


# ------------------------------------------------------------------ driver side


def _installed_stop_flag():
    """The orchestrator's StopFlag, found through the SIGTERM handler it
    installed (``run`` does not pass it to executors; a pending chunk can take
    minutes, so waiting for the next result before noticing a SIGTERM is not
    acceptable on a farm). Renders in driver threads (``render_many``) find
    the main thread's flag the same way."""
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if hasattr(owner, "check") and hasattr(owner, "signum") else None


class RayExecutor(Executor):
    """Options (``executor_options`` / ``--executor-address``):

    pool: a :class:`~cinescale_post.orchestrator.ray_pool.RayPool` shared
        with other renders running at the same time (``render_many``); None:
        this render opens its own with the options below and closes it at the end.
    address, num_gpus, num_cpus, runtime_env, init_options, workers: the
        pool's (``RayPool``; ``workers`` is capped at the chunk count).
    max_retries: resubmissions per chunk after a lost worker or a retryable
        error (default 3).
    cancel_grace_s: how long cancelled chunks get to stop cleanly before
        their actors are killed.
    """

    name = "ray"
    in_process = False

    def __init__(self, address: str | None = None, *, max_retries: int = 3, num_gpus: float | None = None,
                 num_cpus: float = 1, runtime_env: dict | None = None, init_options: dict | None = None,
                 cancel_grace_s: float = 10.0, poll_s: float = 0.25, workers: int | None = None,
                 pool: RayPool | None = None):
        if int(max_retries) < 0:
            raise UsageError(f"ray executor: max_retries={max_retries}", fix="use 0 or more")
        self.pool = pool
        self._own_pool = dict(address=address, num_gpus=num_gpus, num_cpus=num_cpus, runtime_env=runtime_env,
                              init_options=init_options, workers=workers)
        self.address = address or None
        self.max_retries = int(max_retries)
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        #: the StopFlag to check while waiting; found from the signal handler when None
        self.stop = None
        self.attempts: dict[str, int] = {}
        #: model loads the actors reported for this render's chunks
        self.loads = 0

    def _check_paths(self, task) -> None:
        plan = (getattr(task, "args", None) or (None,))[0]
        address = self.pool.address if self.pool is not None else self.address
        if plan is None or not (address or os.environ.get("RAY_ADDRESS")):
            return
        for what, p in (("input", getattr(plan, "input", None)), ("output", plan.output.path)):
            if p and not os.path.isabs(p):
                raise UsageError(f"{what} path {p!r} is relative; Ray workers on other machines "
                                 "start in other folders",
                                 fix=f"give the {what} as an absolute path on storage every node mounts")

    # -------------------------------------------------------------- classify

    @staticmethod
    def _lost_types(ray) -> tuple[type, ...]:
        ex = ray.exceptions
        names = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError",
                 "OutOfMemoryError", "RaySystemError", "ActorDiedError", "RayActorError", "ActorUnavailableError")
        return tuple(getattr(ex, n) for n in names if hasattr(ex, n))

    def _failure(self, ray, exc: BaseException) -> tuple[BaseException, bool, str]:
        """(error to raise, retryable, words for the warning)."""
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, CinescaleError):
                return cause, cause.exit_code not in PERMANENT_EXIT_CODES, f"failed ({cause})"
            return cause, True, f"failed ({type(cause).__name__}: {cause})"
        if isinstance(exc, self._lost_types(ray)):
            return exc, True, f"was lost ({type(exc).__name__}: the worker or its node died)"
        return exc, False, f"failed ({type(exc).__name__}: {exc})"

    # -------------------------------------------------------------- run

    def run(self, chunks, *, work, task, sink):
        chunks = list(chunks)
        if not chunks:
            return
        import_ray()
        self._check_paths(task)
        plan, schedule, actor_kwargs = worker_args(task)
        stop = self.stop or _installed_stop_flag()
        pool = self.pool or RayPool(**self._own_pool)
        key = plan.output.path  # the render, as the pool and the actors' frame events name it
        busy: dict[Any, tuple[Any, Any]] = {}  # result ref -> (actor, chunk)
        emitted: set[int] = set()

        def emit_frames(frames) -> None:
            for f in frames:
                if f not in emitted:
                    emitted.add(f)
                    sink.emit("frame", frame=f)

        try:
            pool.open(plan, actor_kwargs, limit=None if self.pool else len(chunks))
            ray = pool.ray
            plan_ref = ray.put(plan)  # sent once, not with every chunk
            queue = collections.deque(chunks)
            while queue or busy:
                if stop is not None:
                    stop.check()
                while queue:
                    actor = pool.acquire(key, timeout=0 if busy else self.poll_s)
                    if actor is None:
                        break
                    chunk = queue.popleft()
                    self.attempts[chunk.id] = self.attempts.get(chunk.id, 0) + 1
                    busy[actor.run_chunk.remote(chunk, plan_ref, schedule)] = (actor, chunk)
                if not busy:
                    continue  # every actor serves another render: wait for one
                ready, _ = ray.wait(list(busy), num_returns=1, timeout=self.poll_s)
                emit_frames(pool.frames(key))
                for ref in ready:
                    actor, chunk = busy.pop(ref)
                    try:
                        info = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - classified below
                        error, retryable, what = self._failure(ray, exc)
                        emit_frames(pool.frames(key))  # what it published before failing
                        if isinstance(error, CinescaleError):
                            pool.release(actor, key)  # its model is fine: keep it loaded
                        else:  # lost, or a plugin crash that may have left the model in a bad state
                            pool.replace(actor, key)
                        tries = self.attempts[chunk.id]
                        if retryable and tries <= self.max_retries:
                            sink.emit("warning", message=f"chunk {chunk.id} {what}; retrying "
                                                         f"(attempt {tries + 1} of {self.max_retries + 1})")
                            queue.appendleft(chunk)
                            continue
                        raise self._final_error(chunk, error, tries, retryable) from exc
                    self.loads += int(info.get("loads", 0))
                    emit_frames(pool.frames(key))
                    info = complete_chunk_info(task, chunk, info)
                    emit_frames(info["frames"])
                    sink.emit("chunk_done", chunk=info["id"], frames=len(info["frames"]), files=info["files"],
                              seconds=info["seconds"])
                    pool.release(actor, key, loads=int(info.get("loads", 0)))
                    yield info
        finally:
            try:
                self._cancel(pool, busy, key)
            finally:
                pool.leave(key)
                if self.pool is None:
                    pool.close()

    def _final_error(self, chunk, error: BaseException, tries: int, retryable: bool) -> BaseException:
        if isinstance(error, CinescaleError):
            return error
        if retryable:
            return TemporaryFailure(
                f"chunk {chunk.id} failed {tries} time(s) on Ray, last: {type(error).__name__}: {error}",
                fix="check the workers' logs (stderr above, or /tmp/ray/session_latest/logs); run the same "
                    "command again to resume from the published frames")
        return CinescaleError(f"chunk {chunk.id}: {type(error).__name__}: {error}",
                              fix="see the Ray error above; run the same command again to resume")

    def _cancel(self, pool: RayPool, busy: dict, key: str) -> None:
        """Stop running chunks the way a local render stops: each actor is
        asked to stop after its current frame (writers remove their
        temporaries); actors that do not finish within the grace are killed
        and replaced (anything they leave is swept by the next run); the
        others go back to the pool."""
        if not busy:
            return
        ray = pool.ray
        for actor, _ in busy.values():
            try:
                actor.stop.remote()
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                log.debug("stop failed: %s", exc)
        left = list(busy)
        deadline = time.monotonic() + self.cancel_grace_s
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=min(0.5, self.cancel_grace_s))
        for ref, (actor, _) in busy.items():
            if ref in left:
                pool.replace(actor, key)
            else:
                pool.release(actor, key)
        busy.clear()


# The core never imports ray: registering the class costs nothing, and
# ``import_ray`` runs only when a render picks this executor.

__all__ = ["RayExecutor", "import_ray", "PERMANENT_EXIT_CODES"]
