"""The cluster side of ``--executor ray``: connecting to Ray and the pool of
actors that keep a model loaded.

A pool serves one render (``RayExecutor`` makes its own) or several at once
(``render_many``: a conform's shots, each render in a driver thread of its
own, all drawing on one pool). An actor keeps the last render it served
(its backend loaded, its reader open), and an idle actor is handed first to
a render it already serves; when it takes a chunk of another render, its
backend ``switch``\\ es to that plan without loading again where the weights
serve it (``Backend.switch``), so a conform on N workers loads the model N
times, not once per shot.

Frames published while chunks run come back through one queue actor as
``(render, frame)`` pairs; the pool sorts them per render for the driver
thread that asks (``frames``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from cinescale_post.contracts.errors import TemporaryFailure, UsageError
from cinescale_post.orchestrator.ray_worker import ChunkActor

log = logging.getLogger(__name__)


def import_ray():
    """``ray``, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("the ray executor needs Ray, which is not installed",
                         fix="pip install 'cinescale-post[ray]' (or use --executor local)") from exc
    return ray


class RayPool:
    """Ray actors for one or several renders (see the module docstring).

    address: Ray cluster address (``ray://head:10001``, ``head:6379`` or
        ``auto``); None starts a local cluster, unless ``RAY_ADDRESS`` is set
        or Ray is already initialised in the process.
    num_gpus: GPUs per actor; None: 1 when the cluster has GPUs and the plan
        does not run on the CPU, else 0.
    num_cpus: CPUs per actor (default 1).
    runtime_env: Ray runtime environment for the actors (e.g. env_vars).
    init_options: extra ``ray.init`` keywords (e.g. ``{"num_cpus": 8}``).
    workers: actors to start (default: one per GPU for GPU renders, else one
        per ``num_cpus`` CPUs of the cluster).

    ``open`` connects and starts the actors (from the main thread: ``ray.init``
    installs signal handlers); ``close`` kills them and shuts down a cluster
    the pool started. Thread-safe between ``open`` and ``close``.
    """

    def __init__(self, address: str | None = None, *, num_gpus: float | None = None, num_cpus: float = 1,
                 runtime_env: dict | None = None, init_options: dict | None = None, workers: int | None = None):
        self.address = address or None
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.runtime_env = runtime_env
        self.init_options = dict(init_options or {})
        self.workers = int(workers) if workers else None
        self.ray: Any = None
        self.opened = False
        #: actors started (one per slot, plus replacements) and model loads they reported
        self.actors_started = 0
        self.loads = 0
        self._started_ray = False
        self._cond = threading.Condition()
        self._idle: list = []
        self._serves: dict[Any, str] = {}  # actor -> the render it served last
        self._holding: dict[str, int] = {}  # render -> actors it holds now
        self._hungry: set[str] = set()  # renders waiting that hold no actor
        self._actors: list = []
        self._frames: dict[str, list[int]] = {}
        self._progress: Any = None
        self._actor_cls: Any = None
        self._actor_kwargs: dict = {}

    # -------------------------------------------------------------- connect

    def _connect(self, ray) -> bool:
        """Initialise Ray unless the process already has; True if we did."""
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

    def actor_options(self, ray, plan) -> dict:
        """Ray options of an actor rendering ``plan``."""
        device = str(getattr(plan, "device", "") or "")
        gpus = self.num_gpus
        if gpus is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
            gpus = 1 if has_gpu and device != "cpu" else 0
        if gpus and device.startswith("cuda:") and device != "cuda:0":
            # Ray gives each actor its GPU through CUDA_VISIBLE_DEVICES, where it is always cuda:0
            raise UsageError(f"--device {device} cannot be honoured on Ray: each task sees only the GPU "
                             "Ray assigned it, as cuda:0",
                             fix="use --device cuda (or auto) with --executor ray")
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "max_restarts": 0}
        if gpus:
            opts["num_gpus"] = gpus
        return opts

    def slots(self, ray, opts: dict, limit: int | None = None) -> int:
        """Actors to start: ``workers``, else one per GPU (GPU renders) or per
        ``num_cpus`` CPUs of the cluster; never more than ``limit``."""
        if self.workers:
            n = int(self.workers)
        else:
            res = ray.cluster_resources()
            if opts.get("num_gpus"):
                n = int(res.get("GPU", 0) // opts["num_gpus"])
            else:
                n = int(res.get("CPU", 1) // max(float(opts.get("num_cpus") or 1), 1e-6))
        return max(1, min(n, limit) if limit else n)

    def open(self, plan, actor_kwargs: dict, *, limit: int | None = None) -> None:
        """Connect and start the actors for renders like ``plan``
        (``actor_kwargs``: the ChunkWorker's host options); ``limit``: at
        most this many actors (a single render: its chunk count)."""
        if self.opened:
            return
        ray = self.ray = import_ray()
        self._started_ray = self._connect(ray)
        self.opened = True
        opts = self.actor_options(ray, plan)
        # max_concurrency 2: ``stop`` reaches an actor while its chunk runs
        self._actor_cls = ray.remote(ChunkActor).options(max_concurrency=2, **opts)
        from ray.util.queue import Queue

        # frames stream to the drivers through a queue actor (polling the chunk actors would
        # interleave their tasks with the render)
        self._progress = Queue(actor_options={"num_cpus": 0})
        self._actor_kwargs = {**actor_kwargs, "progress": self._progress}
        for _ in range(self.slots(ray, opts, limit)):
            self._idle.append(self._new_actor())

    def _new_actor(self):
        self.actors_started += 1
        a = self._actor_cls.remote(**self._actor_kwargs)
        self._actors.append(a)
        return a

    # -------------------------------------------------------------- lending

    def acquire(self, render: str, timeout: float | None = None):
        """An idle actor (first one that served ``render`` last), or None
        after ``timeout`` seconds (0: do not wait). Fair between renders: a
        render that holds an actor gets no second one while another render
        waits with none."""
        with self._cond:
            held = self._holding.get(render, 0)
            if held and self._hungry - {render}:
                return None
            if not held:
                self._hungry.add(render)
            if not self._idle and timeout != 0:
                self._cond.wait(timeout)
            if not self._idle:
                return None
            mine = [a for a in self._idle if self._serves.get(a) == render]
            actor = mine[0] if mine else self._idle[0]
            self._idle.remove(actor)
            self._hungry.discard(render)
            self._holding[render] = held + 1
            return actor

    def release(self, actor, render: str, *, loads: int = 0) -> None:
        """``actor`` finished a chunk of ``render`` (loading the model
        ``loads`` times for it) and keeps serving it."""
        with self._cond:
            self.loads += loads
            self._serves[actor] = render
            self._holding[render] = max(self._holding.get(render, 0) - 1, 0)
            self._idle.append(actor)
            self._cond.notify_all()

    def replace(self, actor, render: str) -> None:
        """Kill ``actor`` (lost, or a plugin crash that may have left its model
        in a bad state), which ``render`` held, and put a fresh one (it loads
        the model) in its place."""
        self.kill(actor)
        with self._cond:
            self._serves.pop(actor, None)
            self._holding[render] = max(self._holding.get(render, 0) - 1, 0)
            self._idle.append(self._new_actor())
            self._cond.notify_all()

    def leave(self, render: str) -> None:
        """``render`` wants no more actors (finished or stopped)."""
        with self._cond:
            self._hungry.discard(render)
            self._cond.notify_all()

    def kill(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("kill failed: %s", exc)

    def frames(self, render: str) -> list[int]:
        """Frames of ``render`` the actors published since the last call."""
        with self._cond:
            try:
                n = self._progress.qsize()
                for key, frame in (self._progress.get_nowait_batch(n) if n else ()):
                    self._frames.setdefault(key, []).append(frame)
            except Exception as exc:  # noqa: BLE001 - progress is best effort; chunk results carry every frame
                log.debug("progress queue failed: %s", exc)
            return self._frames.pop(render, [])

    def close(self) -> None:
        """Kill every actor; shut down a cluster this pool started."""
        if not self.opened:
            return
        self.opened = False
        for a in self._actors:
            self.kill(a)
        self._actors.clear()
        self._idle.clear()
        try:
            self._progress.shutdown()
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("queue shutdown failed: %s", exc)
        if self._started_ray:
            self.ray.shutdown()


__all__ = ["RayPool", "import_ray"]
