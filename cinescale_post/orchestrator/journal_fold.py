"""A finished render leaves a tidy folder: its unit logs folded into the manifest.

While a render runs, every process appends what it published to its own
log in ``<output>.cinescale/`` (``manifest.py``). Once every frame of the
render is published and verified (for a movie: assembled), those logs are
moved into the manifest under ``journal`` and the work folder is removed,
so the output folder holds the frames (or the movie), the manifest and the
OTIO file only. Everything that reads the logs (resume, ``--verify``,
assemble, QC, editorial, the seams hand-on, the frozen memory plan, which
lives in the manifest anyway) reads them through ``Manifest``, which sees
folded records and live logs alike, so a re-run of a finished render still
finds every frame done, and a later render into the same output (new frames,
or a file deleted and rendered again) simply starts new logs next to it.

Farm tasks share one output, so folding must never lose a record:

* it runs under the manifest's lock file, as every manifest write does, so
  no other task's read-modify-write overwrites the folded records;
* it removes only logs nobody writes any more: those that end with their
  writer's ``closed`` line, and those of dead processes on this host (a
  ``kill -9``). A log of a task still running elsewhere stays, its records
  are folded by whichever task finishes after it, and the folder stays
  until then;
* the manifest is written (temporary name + rename) before any log is
  removed, so a crash in between leaves records twice, never zero times.

An interrupted or failed render folds nothing: its logs are what resume reads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from cinescale_post.orchestrator.resume import START_CLAIM, assembled_ok, finished_frames
from cinescale_post.orchestrator.manifest import JOURNAL_KEY, Manifest, atomic_write_text, journal_writer, pid_alive

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    folded: list[str] = field(default_factory=list)  # logs moved into the manifest and removed
    kept: list[str] = field(default_factory=list)  # logs another process may still write
    removed_folder: bool = False


def render_complete(manifest: Manifest, plan, job_frames=None) -> bool:
    """Is every frame of this render (and of the farm job it is a task of)
    published and verified? A movie counts once it is assembled."""
    data = manifest.read() or {}
    if plan.output.kind == "movie":
        return assembled_ok(manifest, data, False)
    wanted = set(plan.frames) | set(job_frames or ())
    return bool(wanted) and wanted <= finished_frames(manifest, plan.source)


def fold(manifest: Manifest) -> FoldResult:
    """Fold the closed unit logs into the manifest and remove what a
    finished render no longer needs. Call only when the render is complete
    (:func:`render_complete`, or after assembly). Never raises for a
    folder it cannot tidy: it says so in the log and leaves it."""
    res = FoldResult()
    if manifest.read_only or not manifest.work.is_dir():
        return res
    manifest.close()  # this process's own log ends "closed" first
    with manifest.locked(wait_s=10.0) as held:
        if not held:
            return res  # another task is writing the manifest (or folding): it, or the next run, tidies up
        data = manifest.read()
        if data is None:
            return res
        journal = dict(data.get(JOURNAL_KEY) or {})
        units = list(journal.get("units") or [])
        substituted = dict(journal.get("substituted") or {})
        done_with = []
        for path, records in manifest.journals():
            if not _writer_done(path, records):
                res.kept.append(str(path))
                continue
            done_with.append(path)
            for rec in records:
                if isinstance(rec.get("substituted"), dict):
                    substituted.update(rec["substituted"])
                elif "closed" not in rec:
                    units.append(rec)
        if not done_with:
            return _tidy(manifest, res)
        journal.update(folded=time.strftime("%Y-%m-%dT%H:%M:%S%z"), units=_compact(manifest, units),
                       substituted=dict(sorted(substituted.items(), key=lambda kv: int(kv[0]))))
        journal["logs"] = int(journal.get("logs", 0)) + len(done_with)
        data[JOURNAL_KEY] = journal
        atomic_write_text(manifest.path, json.dumps(data, indent=2))  # before any log goes
        for path in done_with:
            try:
                path.unlink()
                res.folded.append(str(path))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("folded %s into %s but cannot remove it: %s", path, manifest.path, exc)
    return _tidy(manifest, res)


def _writer_done(path, records: list[dict]) -> bool:
    if records and "closed" in records[-1]:
        return True
    who = journal_writer(path)
    return who is not None and who[0] == socket.gethostname() and who[1] != os.getpid() and not pid_alive(who[1])


def _compact(manifest: Manifest, units: list[dict]) -> list[dict]:
    """Per unit id, the record that matches its file now (an older render of
    the frame, replaced since, describes nothing on disk); where none
    matches (a movie's chunks, removed after assembly), every distinct one."""
    by_id: dict[str, list[dict]] = {}
    for rec in units:
        if isinstance(rec, dict) and "id" in rec:
            recs = by_id.setdefault(str(rec["id"]), [])
            if rec not in recs:
                recs.append(rec)
    out = []
    for recs in by_id.values():
        match = next((r for r in reversed(recs) if _matches(manifest, r)), None)
        out.extend([match] if match is not None else recs)
    return out


def _matches(manifest: Manifest, rec: dict) -> bool:
    try:
        st = (manifest.root / rec["file"]).stat()
    except (OSError, KeyError, TypeError):
        return False
    return st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns")


def _tidy(manifest: Manifest, res: FoldResult) -> FoldResult:
    """Remove what is left of the work folder: handed-on contributions (every
    frame is published, so none is needed) and the empty folders. ``rmdir``
    only: anything a live task put there since keeps the folder."""
    from cinescale_post.orchestrator.seams import seams_dir

    seams = seams_dir(manifest)
    if not res.kept and seams.is_dir():
        for p in seams.glob("w*-f*.npy"):
            p.unlink(missing_ok=True)
    # the start claim served the tasks that began together; any task starting now finds the manifest
    (manifest.work / START_CLAIM).unlink(missing_ok=True)
    for folder in (seams, manifest.work / "chunks", manifest.work):
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not empty: a log still written elsewhere, chunks left for `cinescale assemble`
    res.removed_folder = not manifest.work.exists()
    return res


def finish(manifest: Manifest, plan, job_frames=None, warn=None) -> FoldResult | None:
    """After a finished run: fold when the whole render is complete. A
    folder that cannot be tidied never fails a finished render."""
    try:
        if not render_complete(manifest, plan, job_frames):
            return None
        return fold(manifest)
    except OSError as exc:  # OutputError too: the frames are published; tidying is a courtesy
        if warn is not None:
            warn(f"render finished; its work folder {manifest.work} is kept ({exc})")
        return None
