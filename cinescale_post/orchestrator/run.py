"""``run(plan, host, sink)``: reader -> windows -> backend -> writer, resumable.

Flow for one render (values down, results up, progress through the sink):

1. Check the manifest next to the output: a different plan or input refuses
   to mix unless ``overwrite``; verified units (frame files or chunk movies)
   from earlier runs are skipped.
2. Lay out windows over the *whole* source and group the requested frames
   into chunks on a global grid (``windows.py``), so any sub-range renders
   the same pixels as a full render.
3. The executor runs each chunk: read the frames its windows need (a small
   cache, never the clip), render each window, blend overlaps, place the
   result in the output frame, write it, log the unit.
4. A movie render that owns the whole range is assembled from its chunks by
   packet copy, with audio and timecode.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cinescale_post.contracts.errors import CinescaleError, OutputError, PluginError
from cinescale_post.contracts.media import Frame, OutputTarget
from cinescale_post.contracts.engine import WindowJob
import cinescale_post.media.output_colour as output_colour
from cinescale_post.orchestrator.alpha_carry import AlphaCarry
from cinescale_post.media.sequence import compress_ranges
import cinescale_post.orchestrator.memory_freeze as frozen_memory
import cinescale_post.orchestrator.journal_fold as journal_fold
import cinescale_post.orchestrator.spelling as spelling
from cinescale_post.orchestrator.executors import get_executor
from cinescale_post.orchestrator.manifest import Manifest, input_identity
from cinescale_post.orchestrator.assembly import assembled_ok, remove_chunks, assemble_movie  # noqa: F401 - assemble_movie: public API
from cinescale_post.orchestrator.oom_backoff import render_with_backoff
from cinescale_post.orchestrator.temporaries import sweep_stale_temporaries
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.seams import SeamStore, clear_seams, seams_dir
from cinescale_post.orchestrator.ranks import DiscardWriter, is_main_process
from cinescale_post.orchestrator.seeds import seed_function
from cinescale_post.orchestrator.signals import StopFlag
from cinescale_post.pipeline.windows import Chunk, Window, assign_windows, chunks as make_chunks, coverage, layout

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


def place(image: np.ndarray, geometry) -> np.ndarray:
    """Put a rendered (scale_h, scale_w, 3) image into the output frame
    (pad with black or crop, per the plan's geometry)."""
    g = geometry
    if (g.scale_w, g.scale_h, g.x, g.y) == (g.width, g.height, 0, 0):
        return image
    canvas = np.zeros((g.height, g.width, 3), dtype=np.float32)
    sx0, sy0 = max(0, -g.x), max(0, -g.y)
    dx0, dy0 = max(0, g.x), max(0, g.y)
    w = min(g.scale_w - sx0, g.width - dx0)
    h = min(g.scale_h - sy0, g.height - dy0)
    canvas[dy0:dy0 + h, dx0:dx0 + w] = image[sy0:sy0 + h, sx0:sx0 + w]
    return canvas


class _FrameCache:
    """Source frames for the current window(s); evicts frames behind it."""

    def __init__(self, reader, rotate: int, carry=None):
        self.reader = reader
        self.k = (rotate // 90) % 4
        self.frames: dict[int, Frame] = {}
        self.carry = carry  # AlphaCarry: keeps alpha away from the model (alpha_carry.py)

    def get(self, numbers: tuple[int, ...]) -> list[Frame]:
        missing = sorted({n for n in numbers if n not in self.frames})
        if missing:
            for fr in self.reader.read(missing):
                if self.k:
                    fr.rgb = np.ascontiguousarray(np.rot90(fr.rgb, self.k))
                if self.carry is not None:
                    fr = self.carry.take(fr)
                elif fr.alpha is not None:
                    fr.alpha = None  # the output keeps no alpha; the model never sees it
                self.frames[fr.number] = fr
        lo = min(numbers)
        for n in [n for n in self.frames if n < lo]:
            del self.frames[n]
        if self.carry is not None:
            self.carry.evict_below(lo)
        return [self.frames[n] for n in numbers]


class _Render:
    """State of one render, shared by its chunk tasks (local executor)."""

    def __init__(self, plan, host, sink, manifest, stop, backend, reader, windows):
        self.plan, self.host, self.sink, self.manifest = plan, host, sink, manifest
        self.stop, self.backend, self.reader = stop, backend, reader
        self.windows = windows
        self.cov = coverage(windows)
        rotate = plan.output.geometry.rotate if plan.output.geometry else 0
        self.carry = AlphaCarry.for_plan(plan, reader, rotate)
        self.cache = _FrameCache(reader, rotate, self.carry)
        self.seed_for = seed_function(plan.seed)
        self.index_of = {n: i for i, n in enumerate(plan.source.frame_numbers)}
        self.colour = None
        if plan.colour.get("mode") == "ocio":
            from cinescale_post.media.ocio import Converter

            self.colour = Converter(dict(plan.colour))
        self.lookbehind = int(backend.lookbehind_frames(plan.backend_options, plan.stages))
        self.outputs: list[str] = []
        self.weight = {(f, wi): wt for f, items in self.cov.items() for wi, wt in items}
        self.plan_frames = frozenset(plan.frames)
        # window-unit scheduling (windows.assign_windows, seams.py); run() sets these for the whole render
        self.owners: dict[int, str | None] = {}
        self.defer = False  # chunks run concurrently: wait for a window's owner instead of rendering it
        self.job: frozenset[int] = self.plan_frames
        self.done_at_start: frozenset[int] = frozenset()
        self.published_frames: set[int] = set()
        self.seams = SeamStore(seams_dir(manifest), persist=False)
        self.windows_rendered = 0

    def schedule(self, *, owners: dict, job_frames, done_at_start, persist: bool, defer: bool = False) -> None:
        """Window-unit scheduling for this render: which chunk renders each
        window (``windows.assign_windows``), the farm job's frames, what was
        published before; ``persist``: hand contributions on through the
        manifest (other processes need them); ``defer``: chunks run
        concurrently, so wait for a window's owner rather than render it."""
        self.owners = dict(owners)
        self.job = frozenset(job_frames) | self.plan_frames
        self.done_at_start = frozenset(done_at_start)
        self.defer = defer
        self.seams = SeamStore(seams_dir(self.manifest), persist=persist or defer,
                               read_only=self.manifest.read_only)

    # ------------------------------------------------------------------ chunk

    def _log(self, uid: str, first: int, last: int, path: str, seconds: float) -> None:
        if not self.manifest.read_only:
            self.manifest.log_unit(self.manifest.make_unit(uid, first, last, path, seconds))

    def run_chunk(self, chunk: Chunk, todo: tuple[int, ...]) -> dict:
        """Render the windows ``chunk`` owns, take the contributions other
        chunks handed on for its shared frames, publish every frame of
        ``todo`` whose contributions are all there, and hand on this
        chunk's contributions to frames another chunk publishes
        (``seams.py``): each window is rendered once, whatever the chunking."""
        t0 = time.monotonic()
        plan = self.plan
        rendered_before = self.windows_rendered
        todo_set = set(todo)
        handed: dict[tuple[int, int], np.ndarray] = {}
        deferred: set[int] = set()
        mine: list[int] = []
        for wi in chunk.windows:
            needs = [f for f in self.windows[wi].weights if f in todo_set]
            if not needs:
                continue
            owner = self.owners.get(wi, chunk.id)
            if owner == chunk.id:
                mine.append(wi)
                continue
            # only what this process holds: frames another process hands on are published
            # through _publish_handed (one unit per frame), so two processes never write overlapping units
            got = {f: self.seams.mem.get((wi, f)) for f in needs}
            if all(v is not None for v in got.values()):
                handed.update({(f, wi): v for f, v in got.items()})
            elif owner is None and self._owner_finished(wi) and any(self.seams.get(wi, f) is None for f in needs):
                mine.append(wi)  # the task that owns it finished without handing this on (a resume): render here
            elif owner is None or self.defer:
                deferred.update(needs)  # its owner hands them on; the side that finishes last publishes
            else:
                mine.append(wi)  # its owner ran earlier without handing it on (a resume): render it here
        now = tuple(f for f in todo if f not in deferred)
        remaining = {f: len(self.cov[f]) for f in now}
        acc: dict[int, np.ndarray] = {}
        runs = _contiguous_runs(now, self.index_of) if plan.output.kind == "movie" else [now]
        order = sorted(set(mine) | {wi for _, wi in handed})
        outgoing: set[int] = set(deferred)
        writers: list = []
        published: list[str] = []
        frames_published: list[int] = []
        try:
            run_iter = iter(runs)
            current_run = next(run_iter, ())
            writer = self._open_writer(current_run) if current_run else None
            if writer is not None:
                writers.append(writer)
            run_t0 = time.monotonic()
            for wi in order:
                # Drop the previous window's images before rendering the next: these
                # names would keep them alive through the render (a UHD float32 frame
                # is 100 MB, and a backend can reuse a buffer nobody holds; issue 11).
                outs = core = items = img = contrib = out = None
                win = self.windows[wi]
                if wi in mine:
                    outs = self._render_window(win)
                    self.windows_rendered += 1
                    core = outs[len(win.context_before): len(win.context_before) + len(win.frames)]
                    items, seen = [], set()
                    for f, img in zip(win.frames, core):
                        if f in seen:
                            continue
                        seen.add(f)
                        hand = f in deferred or (f not in todo_set and self._wanted_elsewhere(f))
                        if f not in remaining and not hand:
                            continue
                        w = self.weight[(f, wi)]
                        contrib = img if w == 1.0 else img * np.float32(w)
                        if hand:
                            self.seams.put(wi, f, contrib)
                            outgoing.add(f)
                        if f in remaining:
                            items.append((f, contrib))
                else:
                    items = [(f, handed[(f, wi)]) for f in win.weights if (f, wi) in handed and f in remaining]
                for f, contrib in items:
                    acc[f] = contrib if f not in acc else acc[f] + contrib
                    remaining[f] -= 1
                    if remaining[f]:
                        continue
                    out = acc.pop(f)
                    if f not in current_run:
                        raise AssertionError(f"frame {f} finished outside its run")  # windows are ordered
                    self._write(writer, f, out)
                    frames_published.append(f)
                    self.seams.drop(f, [i for i, _ in self.cov[f]])
                    if plan.output.kind == "sequence":
                        path = plan.output.path % f
                        self._log(str(f), f, f, path, time.monotonic() - run_t0)
                        published.append(path)
                        run_t0 = time.monotonic()
                    if f == current_run[-1] and plan.output.kind == "movie":
                        paths = writer.close()
                        writers.remove(writer)
                        uid = f"{current_run[0]}-{current_run[-1]}"
                        if paths:
                            self._log(uid, current_run[0], current_run[-1], paths[0], time.monotonic() - run_t0)
                        published.extend(paths)
                        current_run = next(run_iter, None)
                        if current_run is not None:
                            writer = self._open_writer(current_run)
                            writers.append(writer)
                            run_t0 = time.monotonic()
                    self.sink.emit("frame", frame=f)
                    self.stop.check()
            for wr in writers:
                wr.close()
            writers.clear()
            self.published_frames.update(frames_published)
            # a later chunk of this process takes its own frames; concurrent chunks: the last one publishes
            late, files = self._publish_handed(f for f in outgoing
                                               if self.defer or f in deferred or f not in self.plan_frames)
            frames_published += late
            published += files
        except BaseException:
            for wr in writers:
                try:
                    wr.abort()
                except Exception as exc:  # noqa: BLE001 - keep the original error
                    log.warning("could not clean up a writer: %s", exc)
            raise
        seconds = time.monotonic() - t0
        mine_frames = [f for f in frames_published if f in self.plan_frames]
        waiting = sorted(f for f in deferred if f not in self.published_frames)
        info = {"id": chunk.id, "frames": mine_frames, "files": published, "seconds": round(seconds, 3),
                "windows_rendered": self.windows_rendered - rendered_before, "waiting": waiting}
        self.sink.emit("chunk_done", chunk=chunk.id, frames=len(mine_frames), files=published,
                       seconds=info["seconds"])
        self.host.notify("chunk_finished", plan=plan, chunk=info)
        self.outputs.extend(published)
        return info

    def _owner_finished(self, wi: int) -> bool:
        """Another task owns window ``wi``: has it published all its frames
        that the window covers? (It hands contributions on before it
        publishes, so what is missing then will never come.)"""
        theirs = [f for f in self.windows[wi].weights if f in self.job and f not in self.plan_frames]
        return bool(theirs) and all(f in self.done_at_start or f in self.published_frames for f in theirs)

    def _wanted_elsewhere(self, f: int) -> bool:
        """Another chunk (or farm task) of this job publishes ``f`` and it is not published yet."""
        return f in self.job and f not in self.done_at_start and f not in self.published_frames

    def _publish_handed(self, frames) -> tuple[list[int], list[str]]:
        """Publish each of ``frames`` whose contributions from every window
        are all there (in memory or handed on by other tasks): summed in
        window order, as a single pass sums them; one unit per frame.
        Returns (frames, files)."""
        ready: list[tuple[int, np.ndarray]] = []
        for f in sorted(frames, key=self.index_of.__getitem__):
            if f in self.published_frames:
                continue
            parts = [self.seams.get(wi, f) for wi, _ in self.cov[f]]
            if any(p is None for p in parts):
                continue
            img = parts[0]
            for p in parts[1:]:
                img = img + p
            ready.append((f, img))
        images = dict(ready)
        # One unit per frame: two tasks that both publish a handed-on frame write the same
        # unit (same bytes, same name), never overlapping movie chunks.
        runs = [(f,) for f, _ in ready]
        done: list[int] = []
        files: list[str] = []
        for frames_run in runs:
            t0 = time.monotonic()
            writer = self._open_writer(frames_run)
            try:
                for f in frames_run:
                    self._write(writer, f, images[f])
                paths = writer.close()
            except BaseException:
                writer.abort()
                raise
            if self.plan.output.kind == "sequence":
                paths = [self.plan.output.path % frames_run[0]]
            uid = str(frames_run[0]) if self.plan.output.kind == "sequence" else f"{frames_run[0]}-{frames_run[-1]}"
            if paths:
                self._log(uid, frames_run[0], frames_run[-1], paths[0], time.monotonic() - t0)
            files.extend(paths)
            for f in frames_run:
                done.append(f)
                self.published_frames.add(f)
                self.seams.drop(f, [i for i, _ in self.cov[f]])
                if f in self.plan_frames:
                    self.sink.emit("frame", frame=f)
        return done, files

    def _render_window(self, win: Window) -> list[np.ndarray]:
        src = self.plan.source.frame_numbers
        first = self.index_of[win.all_frames[0]]
        behind = tuple(src[max(0, first - self.lookbehind):first])
        got = self.cache.get(behind + win.all_frames)  # one ascending read, no seek back
        carries = []
        if self.colour is not None:  # the backend sees the model's colour space; the cache keeps the plate's
            shown = [self.colour.to_model(f.rgb) for f in got]
            carries = [c for _, c in shown[len(behind):]]  # what the model cannot represent, per frame
            got = [dataclasses.replace(f, rgb=rgb) for f, (rgb, _) in zip(got, shown)]
        frames, before = got[len(behind):], got[:len(behind)]
        g = self.plan.output.geometry
        job = WindowJob(frames=frames, size=(g.scale_w, g.scale_h), seed_for=self.seed_for, lookbehind=before)
        owner = self.host.owner("backends", self.backend.id) or "?"
        where = f"frames {win.frames[0]}-{win.frames[-1]}"
        outs = call_plugin(self.host, self.backend, f"render of {where}", render_with_backoff, self.backend, job,
                           where=where, warn=lambda m: self.sink.emit("warning", message=m))
        if len(outs) != len(frames):
            raise PluginError(f"backend {self.backend.id!r} (plugin {owner}) returned {len(outs)} images "
                              f"for {len(frames)} frames")
        want = (g.scale_h, g.scale_w, 3)
        for img in outs:
            if getattr(img, "shape", None) != want:
                raise PluginError(f"backend {self.backend.id!r} (plugin {owner}) returned an image of shape "
                                  f"{getattr(img, 'shape', None)}, expected {want}")
        outs = [np.asarray(o, dtype=np.float32) for o in outs]
        if self.colour is not None:
            outs = [self.colour.from_model(o, c) for o, c in zip(outs, carries)]
        return outs

    def _open_writer(self, frames: tuple[int, ...]):
        plan = self.plan
        factory = self.host.writer(plan.output.codec)
        path = plan.output.path
        if plan.output.kind == "movie":
            chunks_dir = self.manifest.work / "chunks"
            if not self.manifest.read_only:
                chunks_dir.mkdir(parents=True, exist_ok=True)
            p = Path(plan.output.path)
            path = str(chunks_dir / f"{p.stem}.{frames[0]}-{frames[-1]}{p.suffix}")
        from cinescale_post import __version__

        target = OutputTarget(
            path=path, codec=plan.output.codec, width=plan.output.width, height=plan.output.height,
            source=plan.source, frame_numbers=tuple(frames), options=dict(plan.output.options),
            colour=plan.output.colour, audio=False if plan.output.kind == "movie" else plan.output.audio,
            pixel_aspect=plan.output.geometry.pixel_aspect if plan.output.geometry else 1,
            alpha=getattr(plan.output, "alpha", ""),
            metadata={"software": f"cinescale-post {__version__}", "cinescale:preset": plan.preset,
                      "cinescale:backend": plan.backend, "cinescale:seed": str(plan.seed),
                      "cinescale:plan_digest": plan.digest()},
            **_ocio_target(plan.colour))
        if self.manifest.read_only:
            return DiscardWriter(target)
        try:
            return factory.open(target)
        except CinescaleError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot open output {path}: {exc}", fix="check the folder and free space") from exc

    def _write(self, writer, f: int, image: np.ndarray) -> None:
        src = self.plan.source
        i = self.index_of[f]
        pts = src.pts[i] if src.pts else None
        rgb, alpha = place(image, self.plan.output.geometry), None
        if self.carry is not None:
            rgb, alpha = self.carry.finish(f, rgb)
        rgb = output_colour.convert(rgb, src.colour, self.plan.output.colour)  # SD primaries -> BT.709 if asked
        frame = Frame(number=f, index=i, rgb=rgb, pts=pts,
                      time_base=src.time_base if pts is not None else None, alpha=alpha)
        try:
            writer.write(frame)
        except CinescaleError:
            raise
        except OSError as exc:
            raise OutputError(f"writing frame {f} to {self.plan.output.path} failed: {exc.strerror or exc}",
                              fix="free disk space or fix permissions, then run the same command to resume") from exc


def _ocio_target(colour) -> dict:
    """OutputTarget fields for OCIO mode: the output space and its primaries."""
    if colour.get("mode") != "ocio":
        return {}
    chroma = colour.get("chromaticities")
    return {"colorspace": colour["output"], "chromaticities": tuple(chroma) if chroma else None}


def call_plugin(host, backend, what: str, fn, *args, **kwargs):
    """Call a backend method; any failure that is not one of ours becomes a
    PluginError naming the backend and the plugin that registered it."""
    try:
        return fn(*args, **kwargs)
    except CinescaleError:
        raise
    except Exception as exc:
        owner = host.owner("backends", backend.id) or "?"
        raise PluginError(f"backend {backend.id!r} (plugin {owner}) failed in {what}: {type(exc).__name__}: {exc}",
                          fix="nothing was published for the frames it was working on; report it to the "
                              "plugin's authors (`cinescale plugins` shows its version)") from exc


def _contiguous_runs(frames: tuple[int, ...], index_of: dict[int, int]) -> list[tuple[int, ...]]:
    runs: list[list[int]] = []
    for f in frames:
        if runs and index_of[f] == index_of[runs[-1][-1]] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return [tuple(r) for r in runs]


def _weights_identity(files: list[str], previous: dict | None) -> dict:
    out = {}
    previous = previous or {}
    for f in files:
        st = os.stat(f)
        prev = previous.get(f)
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            out[f] = prev
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        out[f] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}
    return out


def _check_existing(manifest: Manifest, plan, ident: dict, overwrite: bool) -> dict | None:
    existing = manifest.read()
    if existing is None or overwrite:  # --overwrite: render everything again
        return None
    reasons = []
    if existing.get("plan_digest") != plan.digest():
        reasons.append("the plan differs (preset, overrides, model, seed or output settings changed)")
    old_ident = dict(existing.get("input") or {})
    new_ident = dict(ident)
    old_ident.pop("path", None)
    new_ident.pop("path", None)
    if old_ident != new_ident:
        reasons.append("the input changed since that render")
    if not reasons:
        return existing
    raise OutputError(f"{plan.output.path} holds frames of another render ({'; '.join(reasons)}; "
                      f"manifest {manifest.path})",
                      fix="add --overwrite to replace them, or choose another output path")


def load_backend(host, backend, plan, warn) -> dict:
    """Load weights, then adopt the memory plan's VAE tiles and offload.
    Library bars and warnings go to our log (``library_output``); returns
    their counts for the manifest."""
    from cinescale_post.orchestrator.third_party_output import routed

    with routed() as lib:
        call_plugin(host, backend, "load", backend.load, plan)
        if plan.memory.get("available"):
            desc = call_plugin(host, backend, "apply_memory_choice", backend.apply_memory_choice,
                               dict(plan.memory["choice"]))
            if desc:
                warn(f"memory plan: {desc}")
    return lib.to_dict()


def finished_frames(manifest: Manifest, source, *, full: bool = False) -> set[int]:
    """Source frames covered by verified units of earlier runs (or other farm tasks)."""
    idx = {n: i for i, n in enumerate(source.frame_numbers)}
    done: set[int] = set()
    for u in manifest.verified_units(full=full).values():
        if u.first in idx and u.last in idx:
            done.update(source.frame_numbers[idx[u.first]: idx[u.last] + 1])
    return done


def plugin_versions(host) -> dict:
    return {r.name: r.version for r in host.records if r.error is None}


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
    existing = _check_existing(manifest, plan, ident, overwrite)
    if existing is None and main:
        manifest.clear()
        remove_chunks(manifest)
        clear_seams(manifest)
    weights = _weights_identity(backend.weight_files(plan), (existing or {}).get("weights"))
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
    windows = layout(plan.source.frame_numbers, size=plan.window.size, overlap=plan.window.overlap,
                     rule=backend.frame_rule, blend=plan.window.blend, handles=plan.handles)
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
                reader = _open_reader(plan, host)
                try:
                    render = _Render(plan, host, sink, manifest, stop, backend, reader, windows)
                    render.schedule(**sched, persist=job_frames is not None)
                    for _ in ex.run(chunk_list, work=lambda c: render.run_chunk(c, c.frames),
                                    task=functools.partial(render_chunk_task, plan, schedule=sched), sink=sink):
                        pass
                finally:
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
                from cinescale_post.editorial import write_otio

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
    windows = layout(plan.source.frame_numbers, size=plan.window.size, overlap=plan.window.overlap,
                     rule=backend.frame_rule, blend=plan.window.blend, handles=plan.handles)
    load_backend(host, backend, plan, lambda m: None)
    reader = _open_reader(plan, host)
    try:
        render = _Render(plan, host, NullSink(), manifest, _NoStop(), backend, reader, windows)
        if schedule is not None:
            render.schedule(owners=schedule["owners"], job_frames=schedule["job_frames"], done_at_start=done,
                            persist=True, defer=True)
        return render.run_chunk(chunk, todo)
    finally:
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
    """Renders chunks of one render in this process, loading the backend
    once for all of them: the body of a Ray actor (one per GPU or worker
    slot). Each chunk publishes files and logs units like the local path
    and skips frames already published (a retried chunk resumes); windows
    owned by chunks running elsewhere are waited for, never rendered
    (``schedule``: ``run``'s window assignment). ``poll()`` returns the
    frames published since the last call, from another thread, while a
    chunk runs; ``stop()`` makes the running chunk stop after its current
    frame (its temporaries removed)."""

    def __init__(self, plan, *, load_entrypoints: bool = True, extra_plugins: tuple = (),
                 schedule: dict | None = None):
        self.plan, self.schedule_info = plan, schedule
        self.load_entrypoints, self.extra_plugins = load_entrypoints, tuple(extra_plugins)
        self.events = _FrameEvents()
        self.stopper = _StopRequest()
        self.loads = 0
        self._render = None
        self._substituted: dict[int, str] = {}  # substitutions already in the unit log

    def _load(self) -> None:
        from cinescale_post.pipeline.host import Host

        plan = self.plan
        host = Host(load_entrypoints=self.load_entrypoints, extra_plugins=self.extra_plugins)
        backend = host.backend(plan.backend)
        windows = layout(plan.source.frame_numbers, size=plan.window.size, overlap=plan.window.overlap,
                         rule=backend.frame_rule, blend=plan.window.blend, handles=plan.handles)
        manifest = Manifest(plan.output.path)
        load_backend(host, backend, plan, lambda m: None)
        self.loads += 1
        try:
            reader = _open_reader(plan, host)
        except BaseException:
            backend.unload()
            raise
        self._render = _Render(plan, host, self.events, manifest, self.stopper, backend, reader, windows)

    def run_chunk(self, chunk: Chunk) -> dict:
        plan = self.plan
        loads_before = self.loads
        if self._render is None:
            self._load()
        render = self._render
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

    def close(self) -> None:
        if self._render is not None:
            r, self._render = self._render, None
            try:
                r.reader.close()
            finally:
                r.backend.unload()
                r.manifest.close()


def _open_reader(plan, host):
    """The source, opened with the plan's read policy and its probed frame
    table (a movie is not indexed again in every task)."""
    from cinescale_post.media.probe import open_input

    return open_input(plan.input, first_frame=plan.source.first_frame, host=host, policy=plan.read_policy,
                      planned=plan.source)


def record_substitutions(manifest: Manifest, reader, sink) -> None:
    """Frames a reader replaced (``--on-bad-frame`` / ``--missing``): one
    warning each, and a record in this process's unit log, which
    :func:`substituted_frames` gathers for the manifest."""
    subs = reader.substitutions()
    if not subs:
        return
    for number, how in sorted(subs.items()):
        sink.emit("warning", message=f"frame {number} of {reader.info.path} substituted: {how}")
    manifest.log_substitutions(subs)
