"""The SDXL plugin through the real CLI: entry point, plan, orchestrator,
writers; a tiny random-weight model saved to disk (wiring, not pictures)."""

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import OpenEXR

from cinescale_post.testing import make_clip

TINY = ["--set", "dtype=float32", "--set", "output.codec=exr", "--set", "output.width=128",
        "--set", "output.height=96", "--set", "stages.0.steps=3", "--set", "stages.0.dilate_tau=2"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cinescale_post", *args], capture_output=True, text=True,
                          timeout=600)


def _px(path):
    with OpenEXR.File(str(path)) as f:
        return f.channels()["RGB"].pixels.astype(np.float32)


def test_render_refine_through_cli_is_deterministic_and_records_weights(tmp_path, tiny_model):
    clip = make_clip(tmp_path / "in.mov", frames=2, size=(64, 48), rate=Fraction(24000, 1001))
    outs = []
    for name in ("a", "b"):
        r = _cli("render", str(clip), "-o", str(tmp_path / name / "f.####.exr"), "--preset", "sdxl-uhd-refine",
                 "--model", tiny_model, "--prompt", "a test", "--progress", "json", *TINY)
        assert r.returncode == 0, r.stderr
        events = [json.loads(x) for x in r.stdout.splitlines()]
        assert events[-1]["event"] == "finished" and events[-1]["done"] == 2
        outs.append([_px(tmp_path / name / f"f.{n}.exr") for n in (1001, 1002)])
    assert outs[0][0].shape == (96, 128, 3)
    assert all(np.array_equal(x, y) for x, y in zip(outs[0], outs[1]))
    manifest = json.loads((tmp_path / "a" / "f.manifest.json").read_text())
    assert manifest["weights"] and all(len(w["sha256"]) == 64 for w in manifest["weights"].values())


def test_generate_still_through_cli(tmp_path, tiny_model):
    r = _cli("generate", "--prompt", "a lighthouse", "--size", "128x128", "-o", str(tmp_path / "still.exr"),
             "--preset", "sdxl-2k-still", "--model", tiny_model, "--set", "dtype=float32",
             "--set", "output.codec=exr", "--set", "stages.0.steps=2", "--set", "stages.1.steps=2",
             "--set", "stages.1.restart_step=1", "--set", "stages.1.dilate_tau=1", "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert _px(tmp_path / "still.exr").shape == (128, 128, 3)


def test_missing_model_exits_6(tmp_path):
    clip = make_clip(tmp_path / "in.mov", frames=1)
    r = _cli("render", str(clip), "-o", str(tmp_path / "f.####.exr"), "--preset", "sdxl-uhd-refine",
             "--model", str(tmp_path / "no-such-model"), *TINY)
    assert r.returncode == 6 and "no-such-model" in r.stderr and "never downloads" in r.stderr


def test_keep_stages_writes_every_stage_next_to_the_output(tmp_path, tiny_model):
    """Issue 12: the reference returns every stage; --set backend_options.keep_stages=true
    writes the earlier ones as <name>.stage0.####.exr, ... at their own sizes, and the
    output itself is the same picture as without it."""
    import imageio_ffmpeg

    base = ["generate", "--prompt", "a lighthouse", "--size", "128x128", "--preset", "sdxl-2k-still",
            "--model", tiny_model, "--set", "dtype=float32", "--set", "output.codec=exr",
            "--set", "stages.0.steps=2", "--set", "stages.1.steps=2", "--set", "stages.1.restart_step=1",
            "--set", "stages.1.dilate_tau=1", "--progress", "none"]
    r = _cli(*base, "-o", str(tmp_path / "keep" / "lh.####.exr"), "--set", "backend_options.keep_stages=true")
    assert r.returncode == 0, r.stderr
    r = _cli(*base, "-o", str(tmp_path / "plain" / "lh.####.exr"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "keep").glob("*.exr")) == ["lh.1001.exr", "lh.stage0.1001.exr"]
    assert np.array_equal(_px(tmp_path / "keep" / "lh.1001.exr"), _px(tmp_path / "plain" / "lh.1001.exr"))
    stage0 = tmp_path / "keep" / "lh.stage0.1001.exr"
    assert _px(stage0).shape == (64, 64, 3)  # the base stage of the tiny model (64 px)
    # an independent reader agrees on the size
    ff = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(stage0)], capture_output=True,
                        text=True)
    assert "64x64" in ff.stderr, ff.stderr
