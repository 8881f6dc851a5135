"""A night's render survives kill -9 and SIGTERM: after resuming, every
output file is byte-identical to an uninterrupted render, and no partial file
ever carries a final name. Each run is a real `cinescale render` subprocess
with the deterministic slow test backend found through a real entry point."""

import json
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction

import pytest

from cinescale_post.testing import make_clip

from ..helpers import TEST_BACKENDS_DIST, cli_env, fake_distribution, run_cli, tree_bytes, write_preset

FRAMES = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    site = fake_distribution(root / "site", "cinescale-testbackends", TEST_BACKENDS_DIST)
    clip = make_clip(root / "in.mov", frames=FRAMES, size=(48, 32), audio="pcm_s24le", timecode="01:00:00:00",
                     rate=Fraction(24000, 1001), content="index")
    presets = {
        "exr": write_preset(root / "exr.toml", backend="test-slow", codec="exr", width=96, height=64),
        "mov": write_preset(root / "mov.toml", backend="test-slow", codec="prores_hq", width=96, height=64,
                            chunk=4),
    }
    env = cli_env(site, CINESCALE_LOAD_PLUGINS="testbackends")
    refs = {}
    for kind, preset in presets.items():
        out = root / f"ref-{kind}" / ("f.####.exr" if kind == "exr" else "m.mov")
        r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "none"], env=env)
        assert r.returncode == 0, r.stderr
        refs[kind] = tree_bytes(out.parent, "*.exr" if kind == "exr" else "*.mov")
    assert len(refs["exr"]) == FRAMES and len(refs["mov"]) == 1
    return root, clip, presets, env, refs


def _start(clip, out, preset, env, progress="json"):
    return subprocess.Popen([sys.executable, "-m", "cinescale_post", "render", str(clip), "-o", str(out),
                             "--preset", str(preset), "--progress", progress],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _published_are_complete(folder, ref):
    """Every file with a final name equals the reference (no partial finals)."""
    for name, data in tree_bytes(folder, "*.exr").items():
        assert data == ref[name], f"partial or different file under a final name: {name}"
    for name, data in tree_bytes(folder, "*.mov").items():
        assert data == ref[name], f"partial or different movie under a final name: {name}"


@pytest.mark.parametrize("run_no", range(10))
def test_kill_9_then_resume_is_byte_identical(setup, run_no):
    root, clip, presets, env, refs = setup
    kind = "exr" if run_no % 2 == 0 else "mov"
    out_dir = root / f"kill{run_no}"
    out = out_dir / ("f.####.exr" if kind == "exr" else "m.mov")
    rnd = random.Random(run_no)
    proc = _start(clip, out, presets[kind], env)
    # wait for the render to begin, then kill at a random point inside it
    deadline = time.monotonic() + 60
    line = proc.stdout.readline()
    while line and '"start"' not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    time.sleep(rnd.uniform(0.0, 0.15 * FRAMES))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    out_dir.mkdir(exist_ok=True)
    _published_are_complete(out_dir, refs[kind])
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(presets[kind]), "--progress", "none"], env=env)
    assert r.returncode == 0, r.stderr
    got = tree_bytes(out_dir, "*.exr" if kind == "exr" else "*.mov")
    assert got == refs[kind]


def test_sigterm_exits_143_cleans_up_and_resumes(setup):
    root, clip, presets, env, refs = setup
    out_dir = root / "term"
    out = out_dir / "f.####.exr"
    proc = _start(clip, out, presets["exr"], env)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "frame" and events[-1]["done"] >= 3:
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=60)
    events += [json.loads(x) for x in rest.splitlines()]
    assert proc.returncode == 143, err
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "interrupted"
    assert any(e["event"] == "error" and e["exit_code"] == 143 for e in events)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # temporaries removed
    done = tree_bytes(out_dir, "*.exr")
    assert 3 <= len(done) < FRAMES
    _published_are_complete(out_dir, refs["exr"])
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(presets["exr"]), "--progress", "json"],
                env=env)
    assert r.returncode == 0, r.stderr
    (start,) = [e for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "start"]
    assert start["done"] == len(done) and start["total"] == FRAMES
    assert tree_bytes(out_dir, "*.exr") == refs["exr"]
