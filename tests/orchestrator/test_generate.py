"""`generate` through the plan, a t2i backend and the writers (single still
and a sequence), deterministic for a seed."""

import numpy as np
import OpenEXR
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import PlanError
from cinescale_post.orchestrator.generate import run_generate
from cinescale_post.orchestrator.progress import NullSink

from ..helpers import write_preset


def _gen(host, preset, out, seed=3, prompt="a lighthouse"):
    p = plan_mod.build(str(preset), host=host, output=str(out), mode="generate", prompt=prompt, seed=seed,
                       size=(64, 48))
    return run_generate(p, host, NullSink())


def _px(path):
    with OpenEXR.File(str(path)) as f:
        return f.channels()["RGB"].pixels.astype(np.float32)


def test_generate_still_is_deterministic_and_published_atomically(tmp_path, host):
    preset = write_preset(tmp_path / "g.toml", backend="test-noise", codec="exr", width=128, height=96)
    a = _gen(host, preset, tmp_path / "a.exr")
    assert _gen(host, preset, tmp_path / "b.exr") == [str(tmp_path / "b.exr")]
    assert _gen(host, preset, tmp_path / "c.exr", seed=4) == [str(tmp_path / "c.exr")]
    assert a == [str(tmp_path / "a.exr")]
    assert _px(tmp_path / "a.exr").shape == (48, 64, 3)
    assert np.array_equal(_px(tmp_path / "a.exr"), _px(tmp_path / "b.exr"))
    assert not np.array_equal(_px(tmp_path / "a.exr"), _px(tmp_path / "c.exr"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_generate_needs_a_generating_backend(tmp_path, host):
    preset = write_preset(tmp_path / "d.toml", backend="draft", codec="exr")
    with pytest.raises(PlanError) as e:
        _gen(host, preset, tmp_path / "a.exr")
    assert "cannot generate" in str(e.value)
