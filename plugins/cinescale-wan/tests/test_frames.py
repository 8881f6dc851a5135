"""Frame accuracy through the real orchestrator (plan.build + orchestrator.run):
a tiny Wan model saved to disk refines clips of 1, 5, 17, 23, 81 and 100
frames in overlapping 4n+1 windows; the output has the input's frame count,
rate and timecode, and a second render is identical."""

from fractions import Fraction

import av
import numpy as np
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip

PRESET = """schema = 1
description = "tiny wan refine"
backend = "wan"
dtype = "float32"
seed = 11
prompt = "a brown owl in the snow"
negative_prompt = "blurry"

[output]
codec = "prores_hq"
width = 64
height = 64
fit = "pad"
audio = false
chunk = 0

[window]
size = 17
overlap = 4
blend = "linear"

[backend_options]
max_sequence_length = 16

[[stages]]
size = "output"
steps = 2
restart_step = 1
shift = 11.0
"""


@pytest.fixture(scope="module")
def host():
    import cinescale_wan.plugin as wan_plugin
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=False, extra_plugins=(wan_plugin,))


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    p = tmp_path_factory.mktemp("preset") / "tiny-wan-refine.toml"
    p.write_text(PRESET)
    return p


def _render(host, preset, model, clip, out, **kw):
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out), model=model, **kw)
    summary = run(p, host, NullSink())
    assert summary.status == "finished", summary
    return p


def _read(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        tc = s.metadata.get("timecode") or c.metadata.get("timecode")
        return frames, s.average_rate, tc, (s.width, s.height)


@pytest.mark.parametrize("n", [1, 5, 17, 23, 81, 100])
def test_count_rate_and_timecode_are_kept(tmp_path, host, preset, tiny_model, n):
    rate = Fraction(24000, 1001)
    clip = make_clip(tmp_path / "in.mov", frames=n, size=(32, 32), rate=rate, timecode="01:00:10:00",
                     content="gradient")
    out = tmp_path / "out" / "uhd.mov"
    p = _render(host, preset, tiny_model, clip, out)
    assert p.window.size == 17 and p.window.overlap == 4
    frames, got_rate, tc, size = _read(out)
    assert len(frames) == n and got_rate == rate and tc == "01:00:10:00" and size == (64, 64)
    if n in (23, 100):  # several windows, blended: a re-render gives the same pixels
        again = tmp_path / "again" / "uhd.mov"
        _render(host, preset, tiny_model, clip, again)
        assert all(np.array_equal(a, b) for a, b in zip(frames, _read(again)[0]))


def test_handles_and_sub_range(tmp_path, host, preset, tiny_model):
    """Context handles make windows of 17 + 2 + 2 frames (padded to 25 inside
    the backend, the padding dropped); a sub-range renders only its frames."""
    clip = make_clip(tmp_path / "in.mov", frames=23, size=(32, 32), rate=Fraction(25), timecode="00:59:59:00")
    out = tmp_path / "seq" / "sh010.####.exr"
    preset_exr = tmp_path / "exr.toml"
    preset_exr.write_text(PRESET.replace('codec = "prores_hq"', 'codec = "exr"'))
    _render(host, preset_exr, tiny_model, clip, out, handles=2, frames="1003-1010")
    written = sorted(p.name for p in (tmp_path / "seq").glob("*.exr"))
    assert written == [f"sh010.{n}.exr" for n in range(1003, 1011)]


def test_generate_end_to_end_with_the_shipped_preset(tmp_path, host, tiny_model):
    """`cinescale generate --preset wan-3k-t2v` path (plan.build + run_generate)
    with tiny overrides: a 2-stage clip of 9 frames at the preset's 15 fps,
    identical for the same seed."""
    from cinescale_post.orchestrator.generate import run_generate

    overrides = ("stages.0.size=[32, 32]", "stages.0.steps=2", "stages.1.size=[64, 48]", "stages.1.steps=3",
                 "stages.1.restart_step=1", "backend_options.num_frames=9", "backend_options.max_sequence_length=16",
                 'dtype="float32"')
    outs = []
    for k in range(2):
        out = tmp_path / f"gen{k}" / "owl.mov"
        p = plan_mod.build("wan-3k-t2v", host=host, output=str(out), overrides=overrides, model=tiny_model,
                           prompt="a brown owl in the snow", mode="generate", size=(64, 48), seed=5)
        assert p.preset == "wan-3k-t2v" and [s["shift"] for s in p.stages] == [7.0, 9.0]
        run_generate(p, host, NullSink())
        frames, rate, _, size = _read(out)
        assert len(frames) == 9 and rate == 15 and size == (64, 48)
        outs.append(frames)
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
