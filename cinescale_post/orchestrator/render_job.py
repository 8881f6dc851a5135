"""``run(plan, host, sink)``: reader -> windows -> backend -> writer, resumable.

Flow for one render (values down, results up, progress through the sink):

1. Check the manifest next to the output: a different plan or input refuses
   to mix unless ``overwrite``; verified units (frame files or chunk movies)
   from earlier runs are skipped.
2. Lay out windows over the *whole* source and group the requested frames
   into chunks on a global grid (``windows.py``), so any sub-range renders
   the same pixels as a full render.
3. The executor runs each chunk (``render_loop.py``; farm and Ray tasks: ``chunk_task.py``): read the frames its windows need (a small
   cache, never the clip), render each window, blend overlaps, place the
   result in the output frame, write it, log the unit.
4. A movie render that owns the whole range is assembled from its chunks by
   packet copy, with audio and timecode.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field


from cinescale_post.orchestrator.backend_calls import load_backend, open_reader, plugin_versions, record_substitutions
from cinescale_post.orchestrator.chunk_task import render_chunk_task
from cinescale_post.orchestrator.render_loop import ChunkRender
from cinescale_post.orchestrator.resume import (assembled_ok, await_header, check_existing, claim_start, finished_frames,
                                                remove_chunks, weights_identity)
from cinescale_post.contracts.errors import CinescaleError
from cinescale_post.media.sequence import compress_ranges
import cinescale_post.orchestrator.memory_freeze as frozen_memory
import cinescale_post.orchestrator.journal_fold as journal_fold
import cinescale_post.orchestrator.spelling as spelling
from cinescale_post.orchestrator.executors import get_executor
from cinescale_post.orchestrator.manifest import Manifest, input_identity
from cinescale_post.orchestrator.assembly import assemble_movie
from cinescale_post.orchestrator.temporaries import sweep_stale_temporaries
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.seams import clear_seams, seams_dir
from cinescale_post.orchestrator.ranks import is_main_process
from cinescale_post.orchestrator.signals import StopFlag
from cinescale_post.pipeline.windows import assign_windows, chunks as make_chunks, plan_layout

log = logging.getLogger(__name__)


@dataclass
class Summary:
    status: str
    frames_done: int
    frames_total: int
    seconds: float
    outputs: list[str] = field(default_factory=list)
    skipped: int = 0
    windows_rendered: int = 0  # backend calls this run made (windows.assign_windows: each once)
    windows_needed: int = 0  # distinct windows covering the frames it had to render
    model_loads: int = 0  # backend loads (local: 1; Ray: one per actor)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run(plan, host, sink, *, overwrite: bool = False, verify: bool = False, executor: str = "local",
        executor_options: dict | None = None, assemble: bool = True,
        job_frames: tuple[int, ...] | None = None) -> Summary:
    """Render ``plan``; return a Summary. Raises CinescaleError subclasses
    (Interrupted on SIGINT/SIGTERM, after cleaning up).

    ``job_frames`` (``--job-frames``): every frame of the farm job this run
    is one task of. Windows that start in another task's frames are left to
    that task, which hands their contributions on through the manifest
    (``seams.py``); frames waiting for one are published by whichever task
    finishes last."""
    t0 = time.monotonic()
    total = len(plan.frames)
    # later tasks and resumes render with the first task's memory plan; tasks starting at once agree on one
    plan, frozen_notes = frozen_memory.claim(plan, overwrite=overwrite)
    for w in (*plan.warnings, *frozen_notes):
        sink.emit("warning", message=w)
    if total == 0:
        sink.emit("start", total=0, done=0, output=plan.output.path, backend=plan.backend)
        sink.emit("finished", status="empty", done=0, total=0, seconds=0.0, outputs=[])
        return Summary("empty", 0, 0, 0.0)
    backend = host.backend(plan.backend)
    main = is_main_process()
    if not main:
        sink = NullSink()
    manifest = Manifest(plan.output.path, read_only=not main)
    ident = input_identity(plan.source)
    existing = check_existing(manifest, plan, ident, overwrite)
    if existing is None and main:
        if claim_start(manifest, plan, overwrite):  # this task starts the render: clear an older one's work
            manifest.clear()
            remove_chunks(manifest)
            clear_seams(manifest)
        else:  # another task of this render started it a moment ago: its work is kept
            existing = await_header(manifest, plan, ident)
    weights = weights_identity(backend.weight_files(plan), (existing or {}).get("weights"))
    written = spelling.manifest_fields(getattr(sink, "spelling", None))
    if existing is None:
        frozen = frozen_memory.record(plan)
        # the output as typed (tt/f.####.exr): assemble, qc and the editorial step have only the manifest
        extra = {"memory_frozen": frozen} if frozen else {}
        extra.update(written)
        manifest.write_header(plan, plugins=plugin_versions(host), input_ident=ident, weights=weights,
                              extra=extra or None)
    elif written and any(existing.get(k) != v for k, v in written.items()):
        manifest.update(**written)  # resumed under another spelling: the latest wins
    if main:
        out_dir = os.path.dirname(os.path.abspath(plan.output.path))
        sweep_stale_temporaries([out_dir, str(manifest.work / "chunks"), str(seams_dir(manifest))])
    owns_all = plan.output.kind == "movie" and set(plan.frames) == set(plan.source.frame_numbers)
    if owns_all and existing and assembled_ok(manifest, existing, verify):
        sink.emit("start", total=total, done=total, output=plan.output.path, backend=plan.backend)
        sink.emit("finished", status="finished", done=total, total=total, seconds=0.0,
                  outputs=[plan.output.path])
        return Summary("finished", total, total, 0.0, [plan.output.path], skipped=total)

    done_frames = finished_frames(manifest, plan.source, full=verify)
    todo_frames = [f for f in plan.frames if f not in done_frames]
    windows = plan_layout(plan, backend.frame_rule)
    chunk_list = make_chunks(plan.source.frame_numbers, todo_frames, windows, plan.output.chunk)
    job = frozenset(job_frames or ()) | frozenset(plan.frames)
    owners = assign_windows(windows, chunk_list, plan.source.frame_numbers, run_frames=plan.frames, job_frames=job)
    sched = {"owners": owners, "job_frames": tuple(sorted(job)), "done_at_start": tuple(sorted(done_frames))}
    rendered = loads = 0
    sink.emit("start", total=total, done=total - len(todo_frames), output=plan.output.path, backend=plan.backend)
    host.notify("render_started", plan=plan)
    status = "failed"
    render = None
    outputs: list[str] = []
    try:
        with StopFlag() as stop:
            ex = get_executor(executor, **(executor_options or {}))
            if chunk_list and ex.in_process:
                manifest.update(library_output=load_backend(host, backend, plan,
                                                            lambda m: sink.emit("warning", message=m)))
                reader = open_reader(plan, host)
                try:
                    render = ChunkRender(plan, host, sink, manifest, stop, backend, reader, windows)
                    render.schedule(**sched, persist=job_frames is not None)
                    for _ in ex.run(chunk_list, work=lambda c: render.run_chunk(c, c.frames),
                                    task=functools.partial(render_chunk_task, plan, schedule=sched), sink=sink):
                        pass
                finally:
                    if render is not None:
                        render.close()
                    record_substitutions(manifest, reader, sink)
                    reader.close()
                    backend.unload()
                outputs = render.outputs
                rendered = render.windows_rendered
                loads = 1
                waiting = sorted(set(todo_frames) - render.published_frames)
            elif chunk_list:
                waiting = set()
                subs_before = manifest.substitutions()
                for info in ex.run(chunk_list, work=None, task=functools.partial(render_chunk_task, plan, schedule=sched),
                                   sink=sink):
                    outputs.extend(info["files"])
                    rendered += info.get("windows_rendered", 0)
                    waiting |= set(info.get("waiting", ()))
                    stop.check()
                for number, how in manifest.substitutions().items():  # the tasks logged them; warn as a local run
                    if subs_before.get(number) != how:
                        sink.emit("warning", message=f"frame {number} of {plan.input} substituted: {how}")
                waiting = sorted(waiting - finished_frames(manifest, plan.source))
                loads = int(getattr(ex, "loads", 0))
                outputs = list(dict.fromkeys(outputs))  # a handed-on frame is reported by both chunks
            else:
                waiting = []
            if waiting:
                sink.emit("warning", message=f"frames {compress_ranges(waiting)} wait for windows another task "
                          "of the job renders; that task publishes them when it ends (nothing to do here)")
            if owns_all and assemble and main:
                final = assemble_movie(manifest, plan.source, plan.output.path, audio=plan.output.audio_mode)
                outputs = [final]
            try:
                from cinescale_post.orchestrator.handback import write_otio

                if main:
                    write_otio(plan, outputs)
            except Exception as exc:  # noqa: BLE001 - a hand-back must never fail a finished render
                sink.emit("warning", message=f"editorial timeline not written: {exc}")
            status = "finished"
    except CinescaleError as exc:
        status = "interrupted" if exc.exit_code in (130, 143) else "failed"
        sink.emit("error", message=str(exc), exit_code=exc.exit_code)
        raise
    except Exception as exc:  # a bug: progress consumers still hear why (exit 1)
        sink.emit("error", message=f"internal error: {type(exc).__name__}: {exc}", exit_code=1)
        raise
    finally:
        manifest.close()
        seconds = round(time.monotonic() - t0, 3)
        done = sink.done if hasattr(sink, "done") else 0
        summary = Summary(status, done, total, seconds, list(outputs), windows_rendered=rendered,
                          windows_needed=len({wi for c in chunk_list for wi in c.windows}), model_loads=loads)
        manifest.update(last_run={"status": status, "seconds": seconds,
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                        substituted_frames=manifest.substitutions())
        if status == "finished" and main:  # complete: logs into the manifest, work folder removed
            journal_fold.finish(manifest, plan, job_frames, warn=lambda m: sink.emit("warning", message=m))
        host.notify("render_finished", plan=plan, summary=summary.to_dict())
        sink.emit("finished", status=status, done=done, total=total, seconds=seconds,
                  outputs=outputs if status == "finished" else summary.outputs)
    summary.outputs = outputs
    return summary


