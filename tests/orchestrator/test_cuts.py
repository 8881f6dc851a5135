"""window.cuts (issue 24): a source with a hard cut inside it is laid out per
shot, so no temporal window and no cross-fade ever mixes frames of two shots.
Judged with the temporal test backend, whose every frame carries a tenth of
its window's mean: a window across the cut would show in the pixels."""

from __future__ import annotations

import numpy as np
import OpenEXR
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.orchestrator.render_job import run
from cinescale_post.pipeline.windows import layout
from cinescale_post.testing import make_clip

from ..helpers import recorder, write_preset

CUT = 10  # index of the first frame of the second shot
DARK, BRIGHT = 0.1, 0.9


@pytest.fixture
def two_shots(tmp_path):
    def content(i, size):
        w, h = size
        return np.full((h, w, 3), DARK if i < CUT else BRIGHT, np.float32)

    return make_clip(tmp_path / "reel.mov", frames=20, size=(64, 48), codec="prores_ks", profile="hq",
                     content=content)


def _means(folder) -> dict[int, float]:
    out = {}
    for p in sorted(folder.glob("f.*.exr")):
        with OpenEXR.File(str(p)) as f:
            out[int(p.name.split(".")[1])] = float(f.channels()["RGB"].pixels.astype(np.float32).mean())
    return out


@pytest.mark.parametrize("cuts", ["detect", "none"])
def test_no_window_crosses_a_detected_cut(tmp_path, host, two_shots, cuts):
    preset = write_preset(tmp_path / "t.toml", backend="test-temporal", codec="exr", width=32, height=24,
                          window=(5, 2), chunk=0)
    out = tmp_path / cuts / "f.####.exr"
    p = plan_mod.build(str(preset), host=host, input=str(two_shots), output=str(out),
                       overrides=(f"window.cuts={cuts}",))
    assert p.window.cuts == ((1001 + CUT,) if cuts == "detect" else ())
    run(p, host, recorder())
    means = _means(out.parent)
    # within a shot every window's mean is the shot's own level: out = level + 0.1 * level (+ noise ~0)
    expected = {n: (DARK if n < 1001 + CUT else BRIGHT) * 1.1 for n in means}
    worst = max(abs(means[n] - expected[n]) for n in means)
    if cuts == "detect":
        assert worst < 0.01, worst
        assert p.to_dict()["window"]["cuts"] == [1001 + CUT]
    else:  # the test can fail: without the cut a window spans both shots
        assert worst > 0.02, worst


def test_layout_keeps_every_window_and_its_context_inside_one_shot():
    wins = layout(range(1, 21), size=5, overlap=2, handles=2, cuts=[11])
    for w in wins:
        shot = {f < 11 for f in w.all_frames}
        assert len(shot) == 1, w
    assert {f for w in wins for f in w.weights} == set(range(1, 21))
