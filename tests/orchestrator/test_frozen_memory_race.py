"""Farm tasks of one render that start at the same moment agree on one
frozen memory plan (issue 14): the first to publish it wins, the others read
it back and adopt it, whatever free memory their own cards report."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import OutOfMemoryError
import cinescale_post.orchestrator.memory_freeze as frozen_memory
from cinescale_post.orchestrator.manifest import work_dir
from cinescale_post.testing import make_clip

from ..helpers import write_preset
from .test_scheduling import _Plugin


@pytest.fixture
def plans(tmp_path, monkeypatch):
    """The same render planned on a 4 GiB card (VAE tile 512) and an 8 GiB
    card (no tiling: another picture), as two farm nodes would plan it."""
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    host = Host(load_entrypoints=False, extra_plugins=(tb, _Plugin()))
    clip = make_clip(tmp_path / "in.mov", frames=20, size=(32, 24), content="index", audio=None)
    preset = write_preset(tmp_path / "m.toml", backend="test-memory", codec="exr", width=32, height=16,
                          window=(9, 2), chunk=7)
    out = tmp_path / "farm" / "f.####.exr"
    got = []
    for free in ("4GiB", "8GiB"):
        monkeypatch.setenv("CINESCALE_FREE_MEMORY", free)
        got.append(plan_mod.build(str(preset), host=host, input=str(clip), output=str(out)))
    assert got[0].memory["choice"]["vae_tile"] == 512 and got[1].memory["choice"]["vae_tile"] is None
    assert got[0].digest() != got[1].digest()
    return got


def _outcome(plan):
    """What one task ends with: its plan's digest and record, or exit 5."""
    try:
        p, _ = frozen_memory.claim(plan)
    except OutOfMemoryError as exc:
        return ("exit", exc.exit_code, None)
    return ("ran", p.digest(), frozen_memory.record(p))


def _check(plans, got):
    """One winner; every task renders the winner's picture (same digest,
    the winner's record in its header) or, on the card that cannot hold
    it, exits 5 -- never its own different choice."""
    claimed = json.loads((work_dir(plans[0].output.path) / frozen_memory.CLAIM_NAME).read_text())
    winner = next(p for p in plans if frozen_memory.record(p) == claimed)
    ran = [g for g in got if g[0] == "ran"]
    assert ran and all(d == winner.digest() and rec == claimed for _, d, rec in ran), got
    refused = [g for g in got if g[0] == "exit"]
    assert all(code == 5 for _, code, _ in refused)
    # the small card refuses only the big card's untiled choice; the big one adopts the small one's tile
    assert len(refused) == (len(got) // 2 if winner is plans[1] else 0), (claimed, got)


def _claim_in_child(plan, barrier, results):
    barrier.wait()
    results.put(_outcome(plan))


def test_tasks_starting_at_once_adopt_one_choice_processes(plans):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(plans[i % 2], barrier, results)) for i in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check(plans, got)


def test_tasks_starting_at_once_adopt_one_choice_threads(plans):
    barrier, got, lock = threading.Barrier(8), [], threading.Lock()

    def task(plan):
        barrier.wait()
        out = _outcome(plan)
        with lock:
            got.append(out)

    threads = [threading.Thread(target=task, args=(plans[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 8
    _check(plans, got)


def test_overwrite_publishes_its_own_choice_and_later_tasks_follow(plans):
    p, _ = frozen_memory.claim(plans[0])  # the 4 GiB card first: VAE tile 512
    assert p.memory["choice"]["vae_tile"] == 512
    again, notes = frozen_memory.claim(plans[1])  # the 8 GiB card, manifest not written yet
    assert again.memory["choice"]["vae_tile"] == 512 and again.digest() == plans[0].digest() and notes
    assert frozen_memory.record(again) == frozen_memory.record(plans[0])  # the first task's numbers
    new, _ = frozen_memory.claim(plans[1], overwrite=True)  # a new render of this output for the big card
    assert new.memory["choice"]["vae_tile"] is None
    with pytest.raises(OutOfMemoryError):
        frozen_memory.claim(plans[0])  # the small card cannot hold the new frozen plan: exit 5
