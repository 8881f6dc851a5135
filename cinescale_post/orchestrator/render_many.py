"""Several renders as one job (a conform's shots): ``run_many``, and one
progress over all of them (``ShotProgress``).

With the local executor the renders run one after another in this process.
With ``ray`` every render runs :func:`~cinescale_post.orchestrator.render_job.run`
in a driver thread of its own, and all of them hand their chunks to one
:class:`~cinescale_post.orchestrator.ray_pool.RayPool`: the shots render in
parallel, an idle actor takes the next chunk of any shot (first one of the
shot it already serves), and its backend switches between shots without
loading again where the weights serve both (``Backend.switch``), so a
conform on N workers loads the model N times. Each render keeps its own
manifest, resume, seams and retries, exactly as when it runs alone.

A render that fails does not stop the others: they finish, then the first
error is raised (an interruption first: SIGINT/SIGTERM stop every render
after its current frames, as for one render).
"""

from __future__ import annotations

import threading

from cinescale_post.contracts.errors import CinescaleError
from cinescale_post.orchestrator.progress import Sink
from cinescale_post.orchestrator.render_job import Summary, run
from cinescale_post.orchestrator.signals import StopFlag

#: ``executor_options`` keys that configure the pool (``RayPool``), not one render's executor.
POOL_KEYS = ("address", "num_gpus", "num_cpus", "runtime_env", "init_options", "workers")


def run_many(jobs, host, *, executor: str = "local", executor_options: dict | None = None,
             overwrite: bool = False) -> list[Summary]:
    """Render every ``(plan, sink)`` of ``jobs`` (movies are not assembled:
    the caller assembles each render's range); return their Summaries in order."""
    jobs = list(jobs)
    opts = dict(executor_options or {})
    if executor != "ray" or len(jobs) < 2:
        return [run(plan, host, sink, overwrite=overwrite, executor=executor, executor_options=opts,
                    assemble=False) for plan, sink in jobs]
    from cinescale_post.orchestrator.ray_pool import RayPool

    pool = RayPool(**{k: opts.pop(k) for k in POOL_KEYS if k in opts})
    results: list[Summary | None] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def render(i: int, plan, sink) -> None:
        try:
            results[i] = run(plan, host, sink, overwrite=overwrite, executor="ray",
                             executor_options={**opts, "pool": pool}, assemble=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors[i] = exc

    with StopFlag():  # the renders' executors find it through the signal handler
        try:
            pool.open(jobs[0][0], {})  # in the main thread: ray.init installs signal handlers
            threads = [threading.Thread(target=render, args=(i, plan, sink), name=f"cinescale-render-{i}",
                                        daemon=True) for i, (plan, sink) in enumerate(jobs)]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # short waits: the main thread runs the signal handlers
        finally:
            pool.close()
    failed = [e for e in errors if e is not None]
    if failed:
        stopped = [e for e in failed if isinstance(e, CinescaleError) and e.exit_code in (130, 143)]
        raise (stopped or failed)[0]
    return [r for r in results if r is not None]


class ShotProgress:
    """One progress over several renders: one ``start`` with the total of
    all, their ``frame``/``warning``/``chunk_done``/``error`` events carrying
    the render's name (``shot``), no ``finished`` of their own (the caller
    emits the job's). Thread-safe: renders may run in driver threads."""

    def __init__(self, inner: Sink, total: int, output: str):
        self.inner, self.total, self.output = inner, total, output
        self.lock = threading.Lock()
        self.started = False

    def shot(self, name: str) -> "ShotSink":
        """The sink of one render, named ``name`` in the events."""
        return ShotSink(self, name)


class ShotSink(Sink):
    """One render's view of a :class:`ShotProgress`. ``done``: its frames
    done (a resumed render starts above 0); ``rendered``: frames it
    published in this run."""

    def __init__(self, parent: ShotProgress, name: str):
        super().__init__(parent.inner.stream)
        self.parent, self.name = parent, name
        self.rendered = 0

    def emit(self, event: str, **fields) -> None:
        parent, inner = self.parent, self.parent.inner
        with parent.lock:
            if event == "start":
                self.done = fields.get("done", 0)
                if not parent.started:
                    parent.started = True
                    inner.emit("start", total=parent.total, done=0, output=parent.output,
                               backend=fields.get("backend"))
                inner.done += fields.get("done", 0)
                return
            if event == "finished":
                return
            if event == "frame":
                self.done += 1
                self.rendered += 1
            inner.emit(event, shot=self.name, **fields)


__all__ = ["POOL_KEYS", "ShotProgress", "ShotSink", "run_many"]
