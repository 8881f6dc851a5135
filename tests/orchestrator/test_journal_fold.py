"""A finished render leaves a tidy folder (issue 17 item 6): frames (or the
movie), the manifest and the OTIO file only; the unit logs are folded into
the manifest and resume, --verify, assemble and farm tasks keep working from
it. An interrupted render keeps its logs; a log another task may still write
is never removed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from fractions import Fraction

import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import Interrupted
from cinescale_post.orchestrator.journal_fold import fold
from cinescale_post.orchestrator.manifest import Manifest, Unit
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip

from ..helpers import cli_env, recorder, run_cli, write_preset

FRAMES = [f"f.{n}.exr" for n in range(1001, 1011)]


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "in.mov", frames=10, size=(32, 24), rate=Fraction(24, 1), content="index",
                     audio=None)


def _render(host, preset, clip, out, sink=None, **kw):
    run_kw = {k: kw.pop(k) for k in ("overwrite", "verify", "assemble", "job_frames") if k in kw}
    sink = sink or recorder()
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out), **kw)
    return p, run(p, host, sink, **run_kw), sink


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_finished_sequence_folder_holds_frames_manifest_and_otio_only(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)
    out = tmp_path / "plate" / "f.####.exr"
    _, s, _ = _render(host, preset, clip, out)
    assert s.status == "finished"
    assert _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
    data = json.loads((out.parent / "f.manifest.json").read_text())
    units = data["journal"]["units"]
    assert sorted(u["file"] for u in units) == FRAMES and all(len(u["sha1"]) == 40 for u in units)
    assert data["journal"]["substituted"] == {} and data["last_run"]["status"] == "finished"
    # a re-run (and a --verify re-run) reads the folded records: nothing to do, nothing written
    for verify in (False, True):
        _, again, sink = _render(host, preset, clip, out, verify=verify)
        assert again.status == "finished" and sink.names("frame") == []
        assert sink.names("start")[0]["done"] == 10
        assert _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
    # a frame lost later is rendered again: a new log next to the folded records, folded in turn
    (out.parent / FRAMES[3]).unlink()
    _, again, sink = _render(host, preset, clip, out)
    assert [e["frame"] for e in sink.names("frame")] == [1004]
    assert _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
    assert len(Manifest(str(out)).verified_units(full=True)) == 10


class _StopAfter:
    """A sink that stops the render after ``n`` frames, as SIGINT does."""

    def __init__(self, n):
        self.inner, self.n = recorder(), n

    def emit(self, event, **fields):
        self.inner.emit(event, **fields)
        if event == "frame" and len(self.inner.names("frame")) == self.n:
            raise Interrupted(signal.SIGINT)


def test_interrupted_render_keeps_its_logs_and_resumes(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48, chunk=2)
    out = tmp_path / "plate" / "f.####.exr"
    with pytest.raises(Interrupted):
        _render(host, preset, clip, out, sink=_StopAfter(4))
    work = out.parent / "f.cinescale"
    logs = list(work.glob("units-*.jsonl"))
    assert logs and "journal" not in json.loads((out.parent / "f.manifest.json").read_text())
    assert len(Manifest(str(out)).verified_units()) == 4
    _, s, sink = _render(host, preset, clip, out)
    assert s.status == "finished" and len(sink.names("frame")) == 6 and sink.names("start")[0]["done"] == 4
    assert not work.exists() and _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
    assert len(Manifest(str(out)).verified_units(full=True)) == 10


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _unit_line(out, frame: int) -> str:
    m = Manifest(str(out))
    u = m.make_unit(str(frame), frame, frame, str(out.parent / f"f.{frame}.exr"), 0.1)
    return json.dumps(u.to_dict()) + "\n"


def test_a_log_another_task_may_still_write_is_kept(tmp_path, host, clip):
    """Logs of a killed task on this host are folded; a log without its
    closed line from another host (a task still running there) stays with
    the folder, its records intact, until a later fold finds it closed."""
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)
    out = tmp_path / "plate" / "f.####.exr"
    _render(host, preset, clip, out, frames="1001-1005")
    _render(host, preset, clip, out, frames="1006-1010")
    # a killed process of this host (no closed line) and a live task on another host
    here = socket.gethostname()
    work = out.parent / "f.cinescale"
    work.mkdir()
    killed = work / f"units-{here}-{_dead_pid()}.0a0b0c0d.jsonl"
    killed.write_text(_unit_line(out, 1002) + '{"id": "10')  # a line cut short by the kill
    elsewhere = work / "units-node-17.farm-4242.00ff00ff.jsonl"
    elsewhere.write_text(_unit_line(out, 1007))
    res = fold(Manifest(str(out)))
    assert res.folded == [str(killed)] and res.kept == [str(elsewhere)] and not res.removed_folder
    assert elsewhere.exists() and len(Manifest(str(out)).verified_units()) == 10
    # the other task publishes one more record and closes its log: the next fold takes it
    with open(elsewhere, "a") as fh:
        fh.write(_unit_line(out, 1008) + '{"closed": "now"}\n')
    _, s, sink = _render(host, preset, clip, out)
    assert sink.names("frame") == [] and not work.exists()
    data = json.loads((out.parent / "f.manifest.json").read_text())
    assert sorted(u["file"] for u in data["journal"]["units"]) == FRAMES  # one record per frame: those on disk


def test_an_open_log_of_a_concurrent_task_loses_nothing(tmp_path, host, clip):
    """A task of this process group still holding its log open while
    another finishes the render: its log stays, and what it writes after
    the fold is still read and folded later."""
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)
    out = tmp_path / "plate" / "f.####.exr"
    _render(host, preset, clip, out, frames="1001-1005")
    live = Manifest(str(out))
    rec = json.loads(_unit_line(out, 1003))
    live.log_unit(Unit(**rec))  # opened, not closed: a task still running
    _render(host, preset, clip, out)  # completes the render and folds
    logs = list((out.parent / "f.cinescale").glob("units-*.jsonl"))
    assert [p.name for p in logs] == [os.path.basename(live._log.name)]
    live.log_unit(Unit(**rec))
    live.close()
    assert len(Manifest(str(out)).unit_records()["1003"]) >= 2
    res = fold(Manifest(str(out)))
    assert res.removed_folder and _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])


def test_farm_tasks_with_job_frames_fold_once_the_job_is_complete(tmp_path, host):
    clip20 = make_clip(tmp_path / "in20.mov", frames=20, size=(16, 8), content="index", audio=None)
    preset = write_preset(tmp_path / "t.toml", backend="test-temporal", codec="exr", width=32, height=16,
                          window=(5, 2), chunk=4)
    ref = tmp_path / "ref" / "f.####.exr"
    _render(host, preset, clip20, ref)
    out = tmp_path / "farm" / "f.####.exr"
    job = tuple(range(1001, 1021))
    rendered = 0
    for a, b in [(1013, 1020), (1001, 1006), (1007, 1012)]:
        assert (out.parent / "f.cinescale").exists() or a == 1013
        rendered += _render(host, preset, clip20, out, frames=f"{a}-{b}", job_frames=job)[1].windows_rendered
    assert rendered == 6  # every window once
    names = [f"f.{n}.exr" for n in job]
    assert _listing(out.parent) == sorted([*names, "f.manifest.json", "f.otio"])
    from .test_scheduling import _exr_tree

    assert _exr_tree(out.parent) == _exr_tree(ref.parent)
    for a, b in [(1001, 1006), (1013, 1020)]:  # a retried task finds its frames done
        _, s, sink = _render(host, preset, clip20, out, frames=f"{a}-{b}", job_frames=job)
        assert sink.names("frame") == [] and s.windows_rendered == 0
    assert _listing(out.parent) == sorted([*names, "f.manifest.json", "f.otio"])


def test_movie_folder_after_assembly_and_after_farm_chunks_plus_assemble(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="prores_hq", width=64, height=48, chunk=4)
    out = tmp_path / "one" / "m.mov"
    _render(host, preset, clip, out)
    assert _listing(out.parent) == ["m.mov", "m.mov.manifest.json", "m.mov.otio"]
    _, again, sink = _render(host, preset, clip, out)
    assert again.status == "finished" and sink.names("frame") == []
    out = tmp_path / "farm" / "m.mov"
    for a, b in [(1005, 1010), (1001, 1004)]:
        p, _, _ = _render(host, preset, clip, out, frames=f"{a}-{b}", assemble=False)
    assert (out.parent / "m.mov.cinescale" / "chunks").is_dir()  # left for `cinescale assemble`
    from cinescale_post.orchestrator.assembly import assemble_movie

    assemble_movie(Manifest(str(out)), p.source, str(out))
    assert "m.mov.cinescale" not in _listing(out.parent) and "m.mov" in _listing(out.parent)
    units = json.loads((out.parent / "m.mov.manifest.json").read_text())["journal"]["units"]
    assert sorted(u["id"] for u in units) == ["1001-1004", "1005-1008", "1009-1010"]


def test_manifest_lock_of_a_dead_process_is_broken_and_updates_serialise(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)
    out = tmp_path / "plate" / "f.####.exr"
    _render(host, preset, clip, out, frames="1001-1002")
    m = Manifest(str(out))
    lock = m.path.with_name(f".{m.path.name}.lock")
    lock.write_text(f"{socket.gethostname()} {_dead_pid()}")
    m.update(note="after a kill")
    assert m.read()["note"] == "after a kill" and not lock.exists()
    # eight writers at once, each adding its own field: none is lost
    threads = [threading.Thread(target=lambda i=i: Manifest(str(out)).update(**{f"k{i}": i})) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = m.read()
    assert all(data[f"k{i}"] == i for i in range(8)) and not lock.exists()


def test_concurrent_cli_tasks_leave_a_tidy_folder(tmp_path, clip):
    """Two farm tasks as real processes at the same time (--job-frames);
    the one that completes the job folds; a re-run has nothing to do."""
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)
    out = tmp_path / "plate" / "f.####.exr"
    env = cli_env(CINESCALE_LOAD_PLUGINS="")
    base = [sys.executable, "-m", "cinescale_post", "render", str(clip), "-o", str(out), "--preset", str(preset),
            "--progress", "none", "--job-frames", "1001-1010"]
    procs = [subprocess.Popen([*base, "--frames", f], env=env, stderr=subprocess.PIPE, text=True)
             for f in ("1001-1005", "1006-1010")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "bar"], env=env)
    assert r.returncode == 0 and "nothing to do" in r.stderr, r.stderr


def test_chunks_of_a_killed_ray_actor_still_fold(tmp_path, host, clip):
    """A Ray actor (``ChunkWorker``) is killed when the render ends, never
    closed: each chunk's log ends closed anyway, so the driver folds it."""
    from cinescale_post.orchestrator.chunk_task import ChunkWorker
    from cinescale_post.pipeline.windows import chunks as make_chunks, layout

    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48, chunk=2)
    out = tmp_path / "plate" / "f.####.exr"
    _render(host, preset, clip, out, frames="1001-1005")
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out))
    backend = host.backend(p.backend)
    windows = layout(p.source.frame_numbers, size=p.window.size, overlap=p.window.overlap, rule=backend.frame_rule,
                     blend=p.window.blend, handles=p.handles)
    worker = ChunkWorker(p, load_entrypoints=False)
    for chunk in make_chunks(p.source.frame_numbers, list(range(1006, 1011)), windows, p.output.chunk):
        worker.run_chunk(chunk)  # never closed: ray.kill
    assert len(list((out.parent / "f.cinescale").glob("units-*.jsonl"))) == 3
    _, s, sink = _render(host, preset, clip, out)
    assert sink.names("frame") == [] and _listing(out.parent) == sorted([*FRAMES, "f.manifest.json", "f.otio"])
