"""The Ray executor on a real local Ray cluster (CPU, 2 slots), with the
deterministic test backends found through a real entry point in the workers.

Fast tests (default run): lazy registration, the install hint, and the
worker-side completion of a resumed chunk against a real render.

Slow tests (``-m slow``; about a minute, most of it Ray starting): output
byte-identical to the local executor for EXR sequences and chunked movies with
temporal windows that cross chunk boundaries; a worker killed with SIGKILL in
the middle of a chunk is resubmitted and the output is still byte-identical;
retryable vs permanent errors; the CLI with ``--progress json`` keeps stdout
pure JSON while a plugin prints, and SIGTERM exits 143 without temporaries.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

import cinescale_post.orchestrator.ray_executor  # noqa: F401 - registers "ray" (ray itself loads lazily)
import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import UsageError
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
from cinescale_post.orchestrator.chunk_task import render_chunk_task
from cinescale_post.pipeline.windows import Chunk
from cinescale_post.testing import make_clip

from ..helpers import TEST_BACKENDS_DIST, cli_env, fake_distribution, recorder, tree_bytes, write_preset

RAY_BACKENDS = '''
import os
import time

from cinescale_post.contracts.errors import InputError
from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.testing.backends import NoiseBackend, TemporalNoiseBackend


class Slower(NoiseBackend):
    """Slow enough that a test can kill a worker in the middle of a chunk."""
    id = "test-slower"

    def render(self, job):
        time.sleep(0.4 * len(job.frames))
        return super().render(job)


class Chatty(NoiseBackend):
    """Prints on stdout (Python and raw fd 1), like a careless plugin."""
    id = "test-chatty"

    def render(self, job):
        print("chatty plugin says hello", flush=True)
        os.write(1, b"chatty raw fd-1 write\\n")
        time.sleep(0.2 * len(job.frames))
        return super().render(job)


class _Counting(NoiseBackend):
    def load(self, plan):
        self.folder = os.path.dirname(os.path.abspath(plan.output.path))

    def _count(self, job):
        with open(os.path.join(self.folder, "attempts.log"), "a") as fh:
            fh.write(f"{job.frames[0].number}\\n")


class FlakyOnce(_Counting):
    """Fails the first time the first frame of a 6-frame chunk is tried."""
    id = "test-flaky"

    def render(self, job):
        self._count(job)
        first = job.frames[0].number
        marker = os.path.join(self.folder, f".flaky-{first}")
        if first in (1001, 1007) and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("simulated CUDA launch failure")
        return super().render(job)


class BadInput(_Counting):
    """Fails like an unreadable source: the same on every worker."""
    id = "test-badinput"

    def render(self, job):
        self._count(job)
        raise InputError("source frame is truncated", fix="re-export the plate")


class SlowTemporal(TemporalNoiseBackend):
    """Temporal windows slow enough that shots rendering at once overlap in time."""
    id = "test-slow-temporal"

    def render(self, job):
        time.sleep(0.1 * len(job.frames))
        return super().render(job)


@hookimpl
def register_backends(register):
    for cls in (Slower, Chatty, FlakyOnce, BadInput, SlowTemporal):
        register(cls())
'''


# ------------------------------------------------------------------ fast tests


def test_ray_executor_is_registered_without_importing_ray():
    """The core knows "ray" lazily: importing the orchestrator imports neither
    ray (slow, optional) nor the executor module; asking for it does the latter only."""
    code = ("import sys; from cinescale_post.orchestrator import executors, render_job; "
            "m = 'cinescale_post.orchestrator.ray_executor'; before = m in sys.modules; "
            "e = executors.get_executor('ray'); "
            "print(before, type(e).__name__, 'ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "RayExecutor", "False"], r.stdout


def test_missing_ray_names_the_extra(monkeypatch):
    import cinescale_post.orchestrator.ray_executor as ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError) as e:
        ray_executor.import_ray()
    assert "cinescale-post[ray]" in str(e.value) and e.value.exit_code == 2


def test_one_gpu_per_task_where_the_cluster_has_gpus():
    """Actor resources follow the cluster and the plan's device (no GPU in
    this sandbox: the cluster is described, the decision is what is tested)."""
    import types

    from cinescale_post.orchestrator.ray_pool import RayPool

    def options(device, gpus_in_cluster, **kw):
        fake_ray = types.SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": float(gpus_in_cluster)})
        return RayPool(**kw).actor_options(fake_ray, types.SimpleNamespace(device=device))

    assert options("cuda", 8)["num_gpus"] == 1 and options("auto", 1)["num_gpus"] == 1
    assert "num_gpus" not in options("cpu", 8)  # a CPU render does not hold GPUs
    assert "num_gpus" not in options("auto", 0)
    assert options("cuda", 8, num_gpus=0.5)["num_gpus"] == 0.5
    assert options("cuda", 8)["max_restarts"] == 0  # retries go through the driver, counted and reported
    with pytest.raises(UsageError, match="cuda:0"):
        options("cuda:1", 8)


def test_resumed_chunk_reports_frames_its_lost_attempt_published(tmp_path, host):
    """What a retried Ray task returns: the whole chunk, files included, even
    though it rendered only what the killed attempt had not published."""
    from cinescale_post.orchestrator.ray_worker import complete_chunk_info

    clip = make_clip(tmp_path / "in.mov", frames=8, size=(32, 24), content="index")
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48)
    out = tmp_path / "o" / "f.####.exr"
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out))
    run(p, host, NullSink(), overwrite=True)  # everything published, as a lost attempt may leave it
    for n in (1003, 1004):  # ... except the last two frames of the chunk
        (out.parent / f"f.{n}.exr").unlink()
    task = functools.partial(render_chunk_task, p, load_entrypoints=False,
                             extra_plugins=(sys.modules["cinescale_post.testing.backends"],))
    chunk = Chunk("1001-1004", (1001, 1002, 1003, 1004), (0, 1, 2, 3))
    info = task(chunk)
    assert info["frames"] == [1003, 1004]  # the retry rendered only the rest
    full = complete_chunk_info(task, chunk, info)
    assert full["frames"] == [1001, 1002, 1003, 1004]
    assert full["files"] == [str(out.parent / f"f.{n}.exr") for n in range(1001, 1005)]
    assert full["resumed"] == [1001, 1002]


def test_chunk_worker_records_substituted_frames_once(tmp_path, host):
    """A Ray actor's chunks log the frames the reader substituted
    (``--missing``/``--on-bad-frame``, issue 11) like a local run, each once
    although the actor's reader stays open across chunks."""
    from cinescale_post.orchestrator.manifest import Manifest
    from cinescale_post.orchestrator.chunk_task import ChunkWorker
    from cinescale_post.pipeline.windows import chunks as make_chunks, layout
    from cinescale_post.testing import make_sequence

    make_sequence(tmp_path / "in" / "sh.####.exr", range(1001, 1009), size=(32, 24), skip=[1003, 1006])
    preset = write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48, chunk=3)
    out = tmp_path / "o" / "sh.####.exr"
    p = plan_mod.build(str(preset), host=host, input=str(tmp_path / "in" / "sh.####.exr"), output=str(out),
                       missing="black")
    backend = host.backend(p.backend)
    windows = layout(p.source.frame_numbers, size=p.window.size, overlap=p.window.overlap, rule=backend.frame_rule,
                     blend=p.window.blend, handles=p.handles)
    worker = ChunkWorker(p, load_entrypoints=False, extra_plugins=(sys.modules["cinescale_post.testing.backends"],))
    for chunk in make_chunks(p.source.frame_numbers, list(p.source.frame_numbers), windows, p.output.chunk):
        worker.run_chunk(chunk)
    worker.close()
    manifest = Manifest(out)
    subs = manifest.substitutions()
    assert sorted(subs) == ["1003", "1006"] and all(v.startswith("black") for v in subs.values())
    logged = [n for _, records in manifest.journals() for r in records for n in r.get("substituted") or {}]
    assert sorted(logged) == ["1003", "1006"]  # each once, in the chunk that read it


# ------------------------------------------------------------------ Ray cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local cluster for the module (Ray takes seconds to start). Workers
    inherit PYTHONPATH/CINESCALE_LOAD_PLUGINS from the processes ray.init
    starts, so the fake distribution's entry points load in every worker,
    also for the CLI drivers that join through RAY_ADDRESS."""
    ray = pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray")
    site = fake_distribution(root / "site", "cinescale-raytest",
                             {**TEST_BACKENDS_DIST, "raytest": "raytest_backends"},
                             modules={"raytest_backends": RAY_BACKENDS})
    spec = importlib.util.spec_from_file_location("raytest_backends", site / "raytest_backends.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "CINESCALE_LOAD_PLUGINS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), saved["PYTHONPATH"]]))
    os.environ["CINESCALE_LOAD_PLUGINS"] = "testbackends,raytest"
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    address = ray.get_runtime_context().gcs_address
    yield {"root": root, "site": site, "module": module, "address": address, "ray": ray}
    ray.shutdown()


@pytest.fixture(scope="module")
def media(cluster):
    clip = make_clip(cluster["root"] / "in.mov", frames=12, size=(48, 32), rate=Fraction(24000, 1001),
                     timecode="01:00:00:00", audio="pcm_s24le", content="index")
    return clip


def _host(cluster):
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=False, extra_plugins=(tb, cluster["module"]))




def _render(cluster, preset, clip, out, executor="local", options=None, **kw):
    host = _host(cluster)
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out), **kw)
    sink = recorder()
    summary = run(p, host, sink, executor=executor, executor_options=options)
    return summary, sink


# In the default run (a real local cluster, ~10 s with its start); the kill / SIGTERM cases are slow.
@pytest.mark.parametrize("kind", ["exr", "mov"])
def test_ray_output_is_byte_identical_to_local(cluster, media, tmp_path, kind):
    # temporal 5-frame windows overlapping by 2, chunks of one stride (3): windows
    # cross chunk boundaries, so chunks on the two actors hand shared frames on
    preset = write_preset(tmp_path / "p.toml", backend="test-temporal", codec="exr" if kind == "exr" else "prores_hq",
                          width=96, height=64, chunk=3, window=(5, 2))
    name = "f.####.exr" if kind == "exr" else "m.mov"
    pattern = "*.exr" if kind == "exr" else "*.mov"
    ref, _ = _render(cluster, preset, media, tmp_path / "local" / name)
    got, sink = _render(cluster, preset, media, tmp_path / "ray" / name, executor="ray")
    assert got.status == "finished"
    assert tree_bytes(tmp_path / "ray", pattern) == tree_bytes(tmp_path / "local", pattern)
    assert len(tree_bytes(tmp_path / "ray", pattern)) == (12 if kind == "exr" else 1)
    assert sorted(f["frame"] for f in sink.names("frame")) == list(range(1001, 1013))
    assert sorted(c["chunk"] for c in sink.names("chunk_done")) == ["1001-1003", "1004-1006", "1007-1009",
                                                                    "1010-1012"]
    # one actor per worker slot keeps the model loaded; each window is rendered once
    assert got.model_loads == 2 and got.windows_rendered == got.windows_needed == ref.windows_rendered == 4
    assert sink.names("finished")[0]["done"] == 12
    if kind == "exr":
        assert sorted(map(os.path.basename, got.outputs)) == sorted(map(os.path.basename, ref.outputs))
    else:
        assert got.outputs == [str(tmp_path / "ray" / "m.mov")]
    # resume semantics are the local ones: a second run finds everything done
    again, sink2 = _render(cluster, preset, media, tmp_path / "ray" / name, executor="ray")
    assert again.status == "finished" and sink2.names("frame") == []


def _kill_mid_chunk(folder: Path, kind: str, killed: list, stop: threading.Event):
    """SIGKILL the worker of the first chunk seen half done: some of its frames
    published (EXR) or its partial chunk movie on disk (MOV)."""
    while not stop.is_set() and not killed:
        for cmd in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmd.read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if not title.startswith("ray::cinescale-chunk-"):
                continue
            first, last = title.rsplit("-", 2)[-2:]
            if kind == "exr":
                half = (folder / f"f.{first}.exr").exists() and not (folder / f"f.{last}.exr").exists()
            else:
                half = any(p.name.startswith(f".m.{first}-{last}") for p in (folder / "m.mov.cinescale" / "chunks").glob(".*")) \
                    if (folder / "m.mov.cinescale" / "chunks").is_dir() else False
            if half:
                os.kill(int(cmd.parent.name), signal.SIGKILL)
                killed.append(f"{first}-{last}")
                return
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exr", "mov"])
def test_killed_worker_is_resubmitted_and_output_stays_identical(cluster, media, tmp_path, kind):
    preset = write_preset(tmp_path / "p.toml", backend="test-slower", codec="exr" if kind == "exr" else "prores_hq",
                          width=96, height=64, chunk=4)
    name = "f.####.exr" if kind == "exr" else "m.mov"
    pattern = "*.exr" if kind == "exr" else "*.mov"
    _render(cluster, preset, media, tmp_path / "local" / name)
    folder = tmp_path / "ray"
    folder.mkdir()
    killed: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_mid_chunk, args=(folder, kind, killed, stop), daemon=True)
    killer.start()
    try:
        got, sink = _render(cluster, preset, media, folder / name, executor="ray")
    finally:
        stop.set()
        killer.join(10)
    assert killed, "no worker was caught in the middle of a chunk"
    warnings = [w["message"] for w in sink.names("warning")]
    assert any(f"chunk {killed[0]} was lost" in w and "retrying" in w for w in warnings), warnings
    assert got.status == "finished"
    assert tree_bytes(folder, pattern) == tree_bytes(tmp_path / "local", pattern)
    # every frame is reported once, including those the killed attempt published
    assert sorted(f["frame"] for f in sink.names("frame")) == list(range(1001, 1013))


def test_retryable_error_is_retried_and_permanent_one_is_not(cluster, media, tmp_path):
    from cinescale_post.contracts.errors import InputError

    flaky = write_preset(tmp_path / "f.toml", backend="test-flaky", codec="exr", width=64, height=48, chunk=6)
    out = tmp_path / "flaky" / "f.####.exr"
    got, sink = _render(cluster, flaky, media, out, executor="ray", options={"max_retries": 1})
    assert got.status == "finished" and len(tree_bytes(out.parent, "*.exr")) == 12
    assert len([w for w in sink.names("warning") if "simulated CUDA launch failure" in w["message"]]) == 2

    bad = write_preset(tmp_path / "b.toml", backend="test-badinput", codec="exr", width=64, height=48, chunk=6)
    out = tmp_path / "bad" / "f.####.exr"
    with pytest.raises(InputError) as e:
        _render(cluster, bad, media, out, executor="ray", options={"max_retries": 3})
    assert e.value.exit_code == 3 and "re-export the plate" in str(e.value)
    # an unreadable source is not retried: each chunk ran at most once (the
    # first failure cancels the other chunk, which may not have started yet)
    attempts = (out.parent / "attempts.log").read_text().split()
    assert attempts and set(attempts) <= {"1001", "1007"} and len(attempts) == len(set(attempts)), attempts


def _cli_env(cluster):
    return cli_env(cluster["site"], CINESCALE_LOAD_PLUGINS="testbackends,raytest", RAY_ADDRESS=cluster["address"],
                   RAY_DEDUP_LOGS="0")


# until cli.py imports the executor registry hook, load it explicitly
_CLI = [sys.executable, "-c", "import cinescale_post.orchestrator.ray_executor; from cinescale_post.cli.commands import main; "
                              "main()"]


@pytest.mark.slow
def test_cli_json_progress_stays_pure_while_a_plugin_prints(cluster, media, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-chatty", codec="exr", width=64, height=48, chunk=4)
    out = tmp_path / "cli" / "f.####.exr"
    r = subprocess.run(_CLI + ["render", str(media), "-o", str(out), "--preset", str(preset), "--progress", "json",
                               "--executor", "ray"], capture_output=True, text=True, env=_cli_env(cluster),
                       timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]  # every stdout line is JSON
    assert [e["event"] for e in events].count("start") == 1, [e for e in events if e["event"] == "warning"]
    assert events[-1]["event"] == "finished" and events[-1]["done"] == 12
    assert "chatty plugin says hello" in r.stderr  # the worker output went to stderr instead
    assert len(tree_bytes(out.parent, "*.exr")) == 12


@pytest.mark.slow
def test_cli_sigterm_cancels_tasks_exits_143_and_resumes(cluster, media, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-slower", codec="exr", width=64, height=48, chunk=4)
    out = tmp_path / "term" / "f.####.exr"
    env = _cli_env(cluster)
    proc = subprocess.Popen(_CLI + ["render", str(media), "-o", str(out), "--preset", str(preset), "--progress",
                                    "json", "--executor", "ray"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out.parent.is_dir() and list(out.parent.glob("f.*.exr"))):  # some frames published
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    events = [json.loads(x) for x in stdout.splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "interrupted"
    # the cancelled tasks stopped between frames and removed their temporaries
    time.sleep(1.0)
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    done = len(tree_bytes(out.parent, "*.exr"))
    assert 1 <= done < 12
    r = subprocess.run(_CLI + ["render", str(media), "-o", str(out), "--preset", str(preset), "--progress", "json",
                               "--executor", "ray"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    start = [json.loads(x) for x in r.stdout.splitlines() if '"start"' in x][0]
    assert start["done"] >= done and len(tree_bytes(out.parent, "*.exr")) == 12


def test_ray_render_records_substituted_frames_like_a_local_run(cluster, tmp_path):
    """Holes filled on Ray actors reach the manifest and the warnings as in a local render."""
    from cinescale_post.testing import make_sequence

    make_sequence(tmp_path / "in" / "sh.####.exr", range(1001, 1007), size=(32, 24), skip=[1002, 1005])
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48, chunk=3)
    src = tmp_path / "in" / "sh.####.exr"
    results = {}
    for executor in ("local", "ray"):
        summary, sink = _render(cluster, preset, src, tmp_path / executor / "sh.####.exr", executor=executor,
                                missing="black")
        assert summary.status == "finished"
        manifest = json.loads((tmp_path / executor / "sh.manifest.json").read_text())
        warned = sorted(w["message"].split(" of ")[0] for w in sink.names("warning") if "substituted" in w["message"])
        results[executor] = (manifest["substituted_frames"], warned)
    assert results["ray"] == results["local"]
    assert sorted(results["ray"][0]) == ["1002", "1005"] and results["ray"][1] == ["frame 1002", "frame 1005"]


def test_a_conform_renders_its_shots_in_parallel_with_one_model_load_per_worker(cluster, tmp_path):
    """Three shots over two sources on the 2-slot cluster: every shot's
    chunks go to one pool of two actors, the shots render at the same time
    (their frame events interleave), each actor loads the model once and
    switches between shots, and the masters are byte-identical to a local
    conform (temporal windows crossing chunks, handed on between actors)."""
    otio = pytest.importorskip("opentimelineio")
    from cinescale_post.editorial.conform import conform
    from cinescale_post.orchestrator.progress import NullSink

    rate = 24
    a = make_clip(tmp_path / "A.mov", frames=16, size=(48, 32), rate=Fraction(rate), timecode="01:00:00:00",
                  content="index")
    b = make_clip(tmp_path / "B.mov", frames=16, size=(48, 32), rate=Fraction(rate), timecode="02:00:00:00",
                  content="index")

    def clip(name, path, media_start, start, dur):
        r = lambda n: otio.opentime.RationalTime(n, rate)  # noqa: E731
        ref = otio.schema.ExternalReference(target_url=str(path),
                                            available_range=otio.opentime.TimeRange(r(media_start), r(16)))
        return otio.schema.Clip(name, media_reference=ref,
                                source_range=otio.opentime.TimeRange(r(media_start + start), r(dur)))

    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.extend([clip("A_head", a, 86400, 0, 6), clip("B_mid", b, 172800, 2, 10), clip("A_tail", a, 86400, 10, 6)])
    tl = otio.schema.Timeline("par")
    tl.tracks.append(track)
    cut = tmp_path / "par.otio"
    otio.adapters.write_to_file(tl, str(cut))
    preset = write_preset(tmp_path / "p.toml", backend="test-slow-temporal", codec="prores_hq", width=96, height=64,
                          chunk=3, window=(5, 2))
    order = []

    class Order(NullSink):
        def show(self, event, fields):
            if event == "frame":
                order.append(fields["shot"])

    local = conform(cut, tmp_path / "local", preset=str(preset), host=_host(cluster))
    got = conform(cut, tmp_path / "ray", preset=str(preset), host=_host(cluster), executor="ray", sink=Order())
    assert [s["shot"] for s in got["shots"]] == [s["shot"] for s in local["shots"]] and len(got["shots"]) == 3
    assert tree_bytes(tmp_path / "ray", "*.mov") == tree_bytes(tmp_path / "local", "*.mov")
    assert len(tree_bytes(tmp_path / "ray", "*.mov")) == 3
    assert local["model_loads"] == 3 and got["model_loads"] == 2  # one per worker, not one per shot
    assert sorted(order) == sorted(s["shot"] for s in got["shots"] for _ in range(s["frame_count"]))
    runs = 1 + sum(x != y for x, y in zip(order, order[1:]))
    assert runs > 3, order  # one after another would be 3 runs of frames
    again = conform(cut, tmp_path / "ray", preset=str(preset), host=_host(cluster), executor="ray")
    assert again["model_loads"] == 0  # everything was there: nothing loads, nothing renders
