"""The render loop of one process: a chunk's windows read, rendered, blended and
written, frame by frame, with resume logging and the hand-on of seams to other
tasks of a farm job (``seams.py``).

Flow for one chunk (values down, results up, progress through the sink): read
the frames its windows need (a small cache, never the clip), render each window,
blend overlaps, place the result in the output frame, write it, log the unit."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
import numpy as np
from cinescale_post.media.placement import place
from cinescale_post.orchestrator.backend_calls import call_plugin
from cinescale_post.contracts.errors import CinescaleError, OutputError, PluginError
from cinescale_post.contracts.media import Frame, OutputTarget
from cinescale_post.contracts.engine import WindowJob
import cinescale_post.media.output_colour as output_colour
from cinescale_post.orchestrator.alpha_carry import AlphaCarry
from cinescale_post.orchestrator.assembly import assemble_movie  # noqa: F401 - assemble_movie: public API
from cinescale_post.orchestrator.oom_backoff import render_with_backoff
from cinescale_post.orchestrator.seams import SeamStore, seams_dir
from cinescale_post.orchestrator.ranks import DiscardWriter
from cinescale_post.orchestrator.seeds import seed_function
from cinescale_post.pipeline.windows import Chunk, Window, coverage
log = logging.getLogger("cinescale_post.orchestrator.render_job")


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


class ChunkRender:
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
        self.mattes = open_mattes(plan, host, rotate)
        mode = plan.matte.get("mode", "")
        self.detail_mattes = mode in ("both", "detail") and backend.takes_mattes
        # holdout: outside the matte the master is the classical draft of the plate (the draft backend's lanczos)
        self.draft = host.upscaler("lanczos") if mode in ("both", "holdout") else None
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

    def close(self) -> None:
        """Close what this render opened beside the plate's reader (the matte)."""
        if self.mattes is not None:
            self.mattes.close()

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
        plate = got[len(behind):]
        g = self.plan.output.geometry
        mattes = self.mattes.values(win.all_frames) if self.mattes is not None else ()
        carries = []
        if self.colour is not None:  # the backend sees the model's colour space; the cache keeps the plate's
            shown = [self.colour.to_model(f.rgb) for f in got]
            carries = [c for _, c in shown[len(behind):]]  # what the model cannot represent, per frame
            got = [dataclasses.replace(f, rgb=rgb) for f, (rgb, _) in zip(got, shown)]
        frames, before = got[len(behind):], got[:len(behind)]
        job = WindowJob(frames=frames, size=(g.scale_w, g.scale_h), seed_for=self.seed_for, lookbehind=before,
                        mattes=tuple(mattes) if self.detail_mattes else ())
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
        if self.draft is not None:  # in the plate's colour space, before windows blend (linear: the same after)
            outs = [holdout(o, self.draft(f.rgb, (g.scale_w, g.scale_h)), m) for o, f, m in zip(outs, plate, mattes)]
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
        rgb = output_colour.convert(rgb, src.colour, self.plan.output.colour)  # SD primaries -> BT.709 (output.primaries)
        frame = Frame(number=f, index=i, rgb=rgb, pts=pts,
                      time_base=src.time_base if pts is not None else None, alpha=alpha)
        try:
            writer.write(frame)
        except CinescaleError:
            raise
        except OSError as exc:
            raise OutputError(f"writing frame {f} to {self.plan.output.path} failed: {exc.strerror or exc}",
                              fix="free disk space or fix permissions, then run the same command to resume") from exc


def open_mattes(plan, host, rotate: int):
    """The render's :class:`~cinescale_post.media.matte.MatteReader`, or None."""
    if not plan.matte:
        return None
    from cinescale_post.media.matte import MatteReader
    from cinescale_post.media.probe import open_input

    g = plan.output.geometry
    return MatteReader(plan.matte, lambda path, first: open_input(path, first_frame=first, host=host,
                                                                  policy=plan.read_policy),
                       plate=plan.input, first_frame=plan.source.frame_numbers[0], rotate=rotate,
                       size=(g.scale_w, g.scale_h))


def holdout(model: np.ndarray, draft: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """``matte * model + (1 - matte) * draft``: (H, W, 3) float32 each, matte (H, W)."""
    m = matte[..., None]
    return (m * model + (np.float32(1.0) - m) * draft).astype(np.float32)


def _ocio_target(colour) -> dict:
    """OutputTarget fields for OCIO mode: the output space and its primaries."""
    if colour.get("mode") != "ocio":
        return {}
    chroma = colour.get("chromaticities")
    return {"colorspace": colour["output"], "chromaticities": tuple(chroma) if chroma else None}


def _contiguous_runs(frames: tuple[int, ...], index_of: dict[int, int]) -> list[tuple[int, ...]]:
    runs: list[list[int]] = []
    for f in frames:
        if runs and index_of[f] == index_of[runs[-1][-1]] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return [tuple(r) for r in runs]


__all__ = ["ChunkRender"]
