"""One chunk of a render as a task of its own: a farm task or a Ray actor
(``ChunkWorker``) loads the backend once and renders the chunks it is given,
reporting frames and substitutions back through the manifest."""

from __future__ import annotations

from cinescale_post.orchestrator.backend_calls import load_backend, open_reader, record_substitutions
from cinescale_post.orchestrator.render_loop import ChunkRender
from cinescale_post.orchestrator.resume import finished_frames
from cinescale_post.orchestrator.manifest import Manifest
from cinescale_post.orchestrator.assembly import assemble_movie  # noqa: F401 - assemble_movie: public API
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.pipeline.windows import Chunk, plan_layout


class _NoStop:
    def check(self) -> None:
        pass


def render_chunk_task(plan, chunk: Chunk, *, load_entrypoints: bool = True, extra_plugins: tuple = (),
                      schedule: dict | None = None) -> dict:
    """Render one chunk from scratch in the calling process (a fresh host,
    backend and reader): the picklable unit of work for distributed
    executors. Publishes files and logs units like the local path; returns
    ``{"id", "frames", "files", "seconds", "windows_rendered", "waiting"}``.
    Skips frames another attempt already published (a retried task
    resumes). ``schedule``: ``run``'s window assignment; chunks of one
    render run concurrently, so windows other chunks own are waited for
    (their contributions arrive through the manifest), never rendered."""
    from cinescale_post.pipeline.host import Host

    host = Host(load_entrypoints=load_entrypoints, extra_plugins=extra_plugins)
    backend = host.backend(plan.backend)
    manifest = Manifest(plan.output.path)
    done = finished_frames(manifest, plan.source)
    todo = tuple(f for f in chunk.frames if f not in done)
    if not todo:
        return {"id": chunk.id, "frames": [], "files": [], "seconds": 0.0}
    windows = plan_layout(plan, backend.frame_rule)
    load_backend(host, backend, plan, lambda m: None)
    reader = open_reader(plan, host)
    render = None
    try:
        render = ChunkRender(plan, host, NullSink(), manifest, _NoStop(), backend, reader, windows)
        if schedule is not None:
            render.schedule(owners=schedule["owners"], job_frames=schedule["job_frames"], done_at_start=done,
                            persist=True, defer=True)
        return render.run_chunk(chunk, todo)
    finally:
        if render is not None:
            render.close()
        record_substitutions(manifest, reader, NullSink())
        reader.close()
        backend.unload()
        manifest.close()


class _StopRequest:
    """Stop between frames when the driver asks (Ray actors: no signals)."""

    def __init__(self):
        self.requested = False

    def check(self) -> None:
        if self.requested:
            import signal

            from cinescale_post.contracts.errors import Interrupted

            raise Interrupted(signal.SIGTERM)


class _FrameEvents:
    """A sink keeping the frames published, for a driver to collect while
    the chunk runs (``ChunkWorker.poll``)."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._frames: list[int] = []
        #: called with each frame as it is published (a Ray actor forwards it to the driver)
        self.forward = None

    def emit(self, event: str, **fields) -> None:
        if event == "frame":
            if self.forward is not None:
                self.forward(int(fields["frame"]))
                return
            with self._lock:
                self._frames.append(int(fields["frame"]))

    def take(self) -> list[int]:
        with self._lock:
            out, self._frames = self._frames, []
        return out


class ChunkWorker:
    """Renders chunks in this process, loading the backend once for all of
    them: the body of a Ray actor (one per GPU or worker slot). Each chunk
    publishes files and logs units like the local path and skips frames
    already published (a retried chunk resumes); windows owned by chunks
    running elsewhere are waited for, never rendered (``schedule``:
    ``run``'s window assignment).

    The chunks may belong to several renders (the shots of a conform): a
    chunk given with another ``plan`` closes the previous render's reader
    and manifest and asks the backend to ``switch`` to the new plan; only a
    backend that cannot serve it with what it holds is unloaded and loaded
    again (``loads`` counts them). ``poll()`` returns the frames published
    since the last call, from another thread, while a chunk runs;
    ``stop()`` makes the running chunk stop after its current frame (its
    temporaries removed)."""

    def __init__(self, plan=None, *, load_entrypoints: bool = True, extra_plugins: tuple = (),
                 schedule: dict | None = None):
        self.plan, self.schedule_info = plan, schedule
        self.load_entrypoints, self.extra_plugins = load_entrypoints, tuple(extra_plugins)
        self.events = _FrameEvents()
        self.stopper = _StopRequest()
        self.loads = 0
        self._host = None
        self._backend = None
        self._render = None
        self._substituted: dict[int, str] = {}  # substitutions already in the unit log

    def _open(self, plan, schedule: dict | None) -> None:
        """Serve ``plan``: the loaded backend switched to it, or loaded."""
        from cinescale_post.pipeline.host import Host

        self._close_render()
        if self._host is None:
            self._host = Host(load_entrypoints=self.load_entrypoints, extra_plugins=self.extra_plugins)
        host, backend = self._host, self._backend
        if backend is not None and not (backend.id == plan.backend and backend.switch(plan)):
            self._backend = None
            backend.unload()
            backend = None
        if backend is None:
            backend = host.backend(plan.backend)
            load_backend(host, backend, plan, lambda m: None)
            self.loads += 1
            self._backend = backend
        windows = plan_layout(plan, backend.frame_rule)
        reader = open_reader(plan, host)
        self.plan, self.schedule_info = plan, schedule
        self._substituted = {}
        self._render = ChunkRender(plan, host, self.events, Manifest(plan.output.path), self.stopper, backend,
                                   reader, windows)

    def run_chunk(self, chunk: Chunk, plan=None, schedule: dict | None = None) -> dict:
        """Render ``chunk`` of ``plan`` (default: the render served last)."""
        loads_before = self.loads
        self.stopper.requested = False  # a stop asked of an earlier chunk (another render's cancel) is spent
        if plan is not None and (self._render is None or plan.output.path != self.plan.output.path):
            self._open(plan, schedule)
        elif self._render is None:
            self._open(self.plan, self.schedule_info)
        plan, render = self.plan, self._render
        done = finished_frames(render.manifest, plan.source)
        sched = self.schedule_info or {"owners": {}, "job_frames": plan.frames}
        render.schedule(owners=sched["owners"], job_frames=sched["job_frames"], done_at_start=done,
                        persist=True, defer=True)
        render.published_frames.clear()
        todo = tuple(f for f in chunk.frames if f not in done)
        try:
            if not todo:
                info = {"id": chunk.id, "frames": [], "files": [], "seconds": 0.0, "windows_rendered": 0,
                        "waiting": []}
            else:
                info = render.run_chunk(chunk, todo)
        finally:
            # the reader stays open across chunks: log only what this chunk substituted (issue 11's
            # manifest record), before the log closes, also when the chunk fails
            subs = render.reader.substitutions()
            new = {n: how for n, how in subs.items() if self._substituted.get(n) != how}
            self._substituted.update(new)
            render.manifest.log_substitutions(new)
            render.manifest.close()  # its log ends "closed": the actor may be killed, the log still folds
        info["loads"] = self.loads - loads_before
        return info

    def poll(self) -> list[int]:
        return self.events.take()

    def stop(self) -> None:
        self.stopper.requested = True

    def _close_render(self) -> None:
        if self._render is not None:
            r, self._render = self._render, None
            try:
                r.close()
                r.reader.close()
            finally:
                r.manifest.close()

    def close(self) -> None:
        try:
            self._close_render()
        finally:
            if self._backend is not None:
                b, self._backend = self._backend, None
                b.unload()


__all__ = ["ChunkWorker", "render_chunk_task"]
