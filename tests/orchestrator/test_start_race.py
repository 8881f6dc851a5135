"""Issue 26 item 1: farm tasks of one render that start at the same moment
must not clear each other's work. Before, every task that found no manifest
cleared the unit logs, chunks and seams: a task starting a moment late could
delete what a quick one had already logged. Now one task claims the start
(the others adopt its manifest), and no unit log is ever lost."""

from __future__ import annotations

import multiprocessing

import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.orchestrator.manifest import Manifest
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
from cinescale_post.orchestrator.resume import finished_frames
from cinescale_post.testing import make_clip

from ..helpers import write_preset

TASKS, PER_TASK = 6, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    root = tmp_path_factory.mktemp("race")
    host = Host(load_entrypoints=False, extra_plugins=(tb,))
    clip = make_clip(root / "in.mov", frames=TASKS * PER_TASK, size=(32, 24), content="index", audio=None)
    preset = write_preset(root / "p.toml", backend="test-noise", codec="exr", width=32, height=24, chunk=1)
    return host, clip, preset


def _task(host, plan, job, barrier):
    barrier.wait()
    run(plan, host, NullSink(), job_frames=job)


@pytest.mark.parametrize("round_", range(3))
def test_tasks_starting_at_once_lose_no_unit_log(tmp_path, setup, round_):
    host, clip, preset = setup
    out = tmp_path / "farm" / "f.####.exr"
    job = tuple(range(1001, 1001 + TASKS * PER_TASK))
    plans = [plan_mod.build(str(preset), host=host, input=str(clip), output=str(out),
                            frames=f"{1001 + k * PER_TASK}-{1000 + (k + 1) * PER_TASK}") for k in range(TASKS)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(TASKS)
    procs = [ctx.Process(target=_task, args=(host, p, job, barrier)) for p in plans]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    files = sorted(p.name for p in out.parent.glob("f.*.exr"))
    assert files == [f"f.{n}.exr" for n in job]
    manifest = Manifest(str(out).replace("####", "%04d"), read_only=True)
    assert finished_frames(manifest, plans[0].source) == set(job)  # every frame's unit is on record


def _slow_task(host, plan, job, barrier, delay):
    """A task whose look at the manifest is slow (busy NFS): it finds none,
    then takes ``delay`` seconds before it goes on, while a quick task logs."""
    import time

    import cinescale_post.orchestrator.render_job as rj

    found = rj.check_existing

    def slow(*args, **kwargs):
        got = found(*args, **kwargs)
        time.sleep(delay)
        return got

    rj.check_existing = slow  # this forked child only
    _task(host, plan, job, barrier)


def test_a_late_starter_does_not_clear_a_quick_tasks_units(tmp_path, setup):
    host, clip, preset = setup
    out = tmp_path / "farm" / "f.####.exr"
    job = tuple(range(1001, 1001 + 2 * PER_TASK))
    quick, late = (plan_mod.build(str(preset), host=host, input=str(clip), output=str(out),
                                  frames=f"{1001 + k * PER_TASK}-{1000 + (k + 1) * PER_TASK}") for k in range(2))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_task, args=(host, quick, job, barrier)),
             ctx.Process(target=_slow_task, args=(host, late, job, barrier, 1.5))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    manifest = Manifest(str(out).replace("####", "%04d"), read_only=True)
    assert finished_frames(manifest, quick.source) >= set(job)
