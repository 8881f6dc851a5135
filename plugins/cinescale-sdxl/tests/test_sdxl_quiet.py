"""Quiet logs with a real tiny SDXL model on disk: with --progress none/json
no diffusers/transformers bar or warning reaches stderr; -v shows them as our
log records; the manifest counts them; the float16 preset runs in float32 on
the CPU, said once."""

import json
import subprocess
import sys

from cinescale_post.testing import make_clip

TINY = ["--set", "output.codec=exr", "--set", "output.width=128", "--set", "output.height=96",
        "--set", "stages.0.steps=2", "--set", "stages.0.dilate_tau=2"]  # the preset's dtype stays float16
LIBRARY_TEXT = ("Loading pipeline components", "Loading weights", "cannot run with `cpu`", "it/s", "%|")


def _render(clip, out, model, *args, verbose=False):
    return subprocess.run([sys.executable, "-m", "cinescale_post", *(["-v"] if verbose else []), "render", str(clip),
                           "-o", str(out), "--preset", "sdxl-uhd-refine", "--model", model, "--prompt", "a test",
                           "--device", "cpu", *args, *TINY], capture_output=True, text=True, timeout=600)


def test_library_output_is_ours_and_counted(tmp_path, tiny_model):
    clip = make_clip(tmp_path / "in.mov", frames=1, size=(64, 48))
    r = _render(clip, tmp_path / "a" / "f.####.exr", tiny_model, "--progress", "none")
    assert r.returncode == 0, r.stderr
    for text in LIBRARY_TEXT:
        assert text not in r.stderr, r.stderr
    man = json.loads((tmp_path / "a" / "f.manifest.json").read_text())
    assert man["library_output"]["progress_bars"] >= 2  # pipeline components + weights of each encoder
    assert man["plan"]["dtype"] == "float32"

    r = _render(clip, tmp_path / "b" / "f.####.exr", tiny_model, "--progress", "json", verbose=True)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]  # stdout: JSON lines only
    said = [e for e in events if e["event"] == "warning" and "float16" in e["message"]]
    assert len(said) == 1 and "float32" in said[0]["message"]
    assert "INFO cinescale_post.libraries: Loading pipeline components" in r.stderr  # -v shows them, ours
    assert "it/s" not in r.stderr and "%|" not in r.stderr  # never a second bar
    assert "cannot run with `cpu`" not in r.stderr  # float16 never reached the CPU
