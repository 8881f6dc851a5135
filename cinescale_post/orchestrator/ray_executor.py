"""``--executor ray``: one Ray actor per GPU (or worker slot), chunks handed out to them.

Each actor holds a :class:`~cinescale_post.orchestrator.chunk_task.ChunkWorker`: it
builds the host, loads the backend and opens the reader once, then renders
chunk after chunk as the driver hands them out (the next one to whichever
actor is free), so a 14B model loads once per GPU, not once per chunk
(``model loads = actors``). Chunks publish files and log units exactly like
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

Progress: the driver polls the busy actors every ``poll_s`` seconds, so
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
import threading
import time
from typing import Any

from cinescale_post.contracts.errors import CinescaleError, TemporaryFailure, UsageError
from cinescale_post.orchestrator.executors import Executor
from cinescale_post.orchestrator.ray_worker import ChunkActor, worker_args, complete_chunk_info

log = logging.getLogger(__name__)

#: Exit codes of errors that fail the same way on any worker: never retried.
PERMANENT_EXIT_CODES = frozenset({2, 3, 4, 6, 130, 143})


def import_ray():
    """``ray``, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("the ray executor needs Ray, which is not installed",
                         fix="pip install 'cinescale-post[ray]' (or use --executor local)") from exc
    return ray


# ------------------------------------------------------------------ driver side


def _installed_stop_flag():
    """The orchestrator's StopFlag, found through the SIGTERM handler it
    installed (``run`` does not pass it to executors; a pending chunk can take
    minutes, so waiting for the next result before noticing a SIGTERM is not
    acceptable on a farm)."""
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if hasattr(owner, "check") and hasattr(owner, "signum") else None


class RayExecutor(Executor):
    """Options (``executor_options`` / ``--executor-address``):

    address: Ray cluster address (``ray://head:10001``, ``head:6379`` or
        ``auto``); None starts a local cluster for this render, unless
        ``RAY_ADDRESS`` is set or Ray is already initialised in the process.
    max_retries: resubmissions per chunk after a lost worker or a retryable
        error (default 3).
    num_gpus: GPUs per task; None: 1 when the cluster has GPUs and the plan
        does not run on the CPU, else 0.
    num_cpus: CPUs per task (default 1).
    runtime_env: Ray runtime environment for the tasks (e.g. env_vars).
    init_options: extra ``ray.init`` keywords (e.g. ``{"num_cpus": 8}`` for a
        local cluster).
    cancel_grace_s: how long cancelled chunks get to stop cleanly before
        their actors are killed.
    workers: actors to start (default: one per GPU for GPU renders, else
        one per ``num_cpus`` CPUs of the cluster; at most one per chunk).
    """

    name = "ray"
    in_process = False

    def __init__(self, address: str | None = None, *, max_retries: int = 3, num_gpus: float | None = None,
                 num_cpus: float = 1, runtime_env: dict | None = None, init_options: dict | None = None,
                 cancel_grace_s: float = 10.0, poll_s: float = 0.25, workers: int | None = None):
        if int(max_retries) < 0:
            raise UsageError(f"ray executor: max_retries={max_retries}", fix="use 0 or more")
        self.address = address or None
        self.max_retries = int(max_retries)
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.runtime_env = runtime_env
        self.init_options = dict(init_options or {})
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        self.workers = int(workers) if workers else None
        #: the StopFlag to check while waiting; found from the signal handler when None
        self.stop = None
        self.attempts: dict[str, int] = {}
        #: actors started (one per worker slot, plus replacements) and model loads they reported
        self.actors_started = 0
        self.loads = 0

    # -------------------------------------------------------------- connect

    def _connect(self, ray) -> bool:
        """Initialise Ray unless the process already has; True if we did
        (and so shut it down afterwards)."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = dict(self.init_options)
        if self.address:
            kwargs["address"] = self.address
        elif not os.environ.get("RAY_ADDRESS"):
            kwargs.setdefault("include_dashboard", False)  # a render-local cluster needs no web UI
        if self.runtime_env:
            kwargs["runtime_env"] = self.runtime_env
        kwargs.setdefault("logging_level", logging.WARNING)
        # ray.init installs its own SIGTERM handler in the driver, which would
        # replace the orchestrator's (stop between frames, exit 143): restore.
        main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            ray.init(**kwargs)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
            raise TemporaryFailure(f"cannot start or reach Ray ({where}): {exc}",
                                   fix="check the address (ray status on the head node), or leave "
                                       "--executor-address out to run a local cluster") from exc
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        return True

    def _task_options(self, ray, task) -> dict:
        plan = (getattr(task, "args", None) or (None,))[0]
        device = str(getattr(plan, "device", "") or "")
        gpus = self.num_gpus
        if gpus is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
            gpus = 1 if has_gpu and device != "cpu" else 0
        if gpus and device.startswith("cuda:") and device != "cuda:0":
            # Ray gives each task its GPU through CUDA_VISIBLE_DEVICES, where it is always cuda:0
            raise UsageError(f"--device {device} cannot be honoured on Ray: each task sees only the GPU "
                             "Ray assigned it, as cuda:0",
                             fix="use --device cuda (or auto) with --executor ray")
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "max_retries": 0, "retry_exceptions": False}
        if gpus:
            opts["num_gpus"] = gpus
        return opts

    def _check_paths(self, task) -> None:
        plan = (getattr(task, "args", None) or (None,))[0]
        if plan is None or not (self.address or os.environ.get("RAY_ADDRESS")):
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

    def _slots(self, ray, opts: dict, n_chunks: int) -> int:
        """Actors to start: ``workers``, else one per GPU (GPU renders) or per
        ``num_cpus`` CPUs of the cluster; never more than there are chunks."""
        if self.workers:
            n = int(self.workers)
        else:
            res = ray.cluster_resources()
            if opts.get("num_gpus"):
                n = int(res.get("GPU", 0) // opts["num_gpus"])
            else:
                n = int(res.get("CPU", 1) // max(float(opts.get("num_cpus") or 1), 1e-6))
        return max(1, min(n, n_chunks))

    def run(self, chunks, *, work, task, sink):
        chunks = list(chunks)
        if not chunks:
            return
        ray = import_ray()
        self._check_paths(task)
        stop = self.stop or _installed_stop_flag()
        started = self._connect(ray)
        busy: dict[Any, tuple[Any, Any]] = {}  # result ref -> (actor, chunk)
        actors: list = []
        emitted: set[int] = set()

        def emit_frames(frames) -> None:
            for f in frames:
                if f not in emitted:
                    emitted.add(f)
                    sink.emit("frame", frame=f)

        try:
            opts = self._task_options(ray, task)
            opts.pop("max_retries", None)
            opts.pop("retry_exceptions", None)
            actor_cls = ray.remote(ChunkActor).options(max_concurrency=2, max_restarts=0, **opts)
            args, kwargs = worker_args(task)
            from ray.util.queue import Queue

            # frames stream to the driver through a queue actor (polling the chunk actors would
            # interleave their tasks with the render)
            progress = Queue(actor_options={"num_cpus": 0})
            kwargs["progress"] = progress

            def new_actor():
                self.actors_started += 1
                a = actor_cls.remote(*args, **kwargs)
                actors.append(a)
                return a

            idle = [new_actor() for _ in range(self._slots(ray, opts, len(chunks)))]
            queue = collections.deque(chunks)
            while queue or busy:
                if stop is not None:
                    stop.check()
                while idle and queue:
                    actor, chunk = idle.pop(0), queue.popleft()
                    self.attempts[chunk.id] = self.attempts.get(chunk.id, 0) + 1
                    busy[actor.run_chunk.remote(chunk)] = (actor, chunk)
                ready, _ = ray.wait(list(busy), num_returns=1, timeout=self.poll_s)
                self._stream(progress, emit_frames)
                for ref in ready:
                    actor, chunk = busy.pop(ref)
                    try:
                        info = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - classified below
                        error, retryable, what = self._failure(ray, exc)
                        self._stream(progress, emit_frames)  # what it published before failing
                        if isinstance(error, CinescaleError):
                            idle.append(actor)  # its model is fine: keep it loaded
                        else:  # lost, or a plugin crash that may have left the model in a bad state
                            self._kill(ray, actor)
                            idle.append(new_actor())
                        tries = self.attempts[chunk.id]
                        if retryable and tries <= self.max_retries:
                            sink.emit("warning", message=f"chunk {chunk.id} {what}; retrying "
                                                         f"(attempt {tries + 1} of {self.max_retries + 1})")
                            queue.appendleft(chunk)
                            continue
                        raise self._final_error(chunk, error, tries, retryable) from exc
                    self.loads += int(info.get("loads", 0))
                    self._stream(progress, emit_frames)
                    info = complete_chunk_info(task, chunk, info)
                    emit_frames(info["frames"])
                    sink.emit("chunk_done", chunk=info["id"], frames=len(info["frames"]), files=info["files"],
                              seconds=info["seconds"])
                    idle.append(actor)
                    yield info
        finally:
            try:
                self._cancel(ray, busy)
            finally:
                for a in actors:
                    self._kill(ray, a)
                if started:
                    ray.shutdown()

    @staticmethod
    def _stream(progress, emit_frames) -> None:
        """Frames the actors published since the last call (progress while a
        chunk runs)."""
        try:
            n = progress.qsize()
            if n:
                emit_frames(progress.get_nowait_batch(n))
        except Exception as exc:  # noqa: BLE001 - progress is best effort; chunk results carry every frame
            log.debug("progress queue failed: %s", exc)

    @staticmethod
    def _kill(ray, actor) -> None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("kill failed: %s", exc)

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

    def _cancel(self, ray, busy: dict) -> None:
        """Stop running chunks the way a local render stops: each actor is
        asked to stop after its current frame (writers remove their
        temporaries); actors that do not finish within the grace are killed
        (anything they leave is swept by the next run)."""
        if not busy:
            return
        for actor, _ in busy.values():
            try:
                actor.stop.remote()
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                log.debug("stop failed: %s", exc)
        left = list(busy)
        deadline = time.monotonic() + self.cancel_grace_s
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=min(0.5, self.cancel_grace_s))
        busy.clear()


# The core never imports ray: registering the class costs nothing, and
# ``import_ray`` runs only when a render picks this executor.

__all__ = ["RayExecutor", "import_ray", "PERMANENT_EXIT_CODES"]
