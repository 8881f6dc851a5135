import dataclasses
import json
from fractions import Fraction

import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import PlanError, UnknownNameError
from cinescale_post.contracts.media import SourceInfo
from cinescale_post.testing import make_clip

from .helpers import write_preset


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("plan") / "c.mov", frames=6, size=(64, 48), rate=Fraction(25))


def _src(w, h, rotation=0):
    return SourceInfo(path="x.mov", kind="movie", format="mov", codec="prores", width=w, height=h,
                      pix_fmt="yuv422p10le", bit_depth=10, rate=Fraction(24), time_base=Fraction(1, 24),
                      frame_numbers=(1001,), rotation=rotation)


def test_overrides_parse_as_toml():
    assert plan_mod.parse_override("output.width=4096") == ("output.width", 4096)
    assert plan_mod.parse_override("output.audio=false") == ("output.audio", False)
    assert plan_mod.parse_override("backend_options.upscaler=bicubic") == ("backend_options.upscaler", "bicubic")
    assert plan_mod.parse_override('prompt="a b"') == ("prompt", "a b")
    with pytest.raises(PlanError):
        plan_mod.parse_override("output.width")


def test_plan_is_frozen_json_and_numbered_like_plates(tmp_path, host, clip):
    p = plan_mod.build("uhd-draft", host=host, input=str(clip), output=str(tmp_path / "o.mov"),
                       overrides=("output.chunk=2",), first_frame=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 3
    d = json.loads(p.to_json())
    assert d["frames"] == "1-6" and d["output"]["chunk"] == 2 and d["source"]["rate"] == "25/1"
    p2 = plan_mod.build("uhd-draft", host=host, input=str(clip), output=str(tmp_path / "elsewhere.mov"),
                        overrides=("output.chunk=2",), first_frame=1, frames="2-3")
    assert p.digest() == p2.digest()  # frame selection and output location do not change pixels
    p3 = plan_mod.build("uhd-draft", host=host, input=str(clip), output=str(tmp_path / "o.mov"),
                        overrides=("output.chunk=2", "backend_options.upscaler=bicubic"), first_frame=1)
    assert p.digest() != p3.digest()


def test_frames_step_and_clamp(tmp_path, host, clip):
    p = plan_mod.build("uhd-exr-draft", host=host, input=str(clip), output=str(tmp_path / "a.####.exr"),
                       frames="1001-1100x2")
    assert p.frames == (1001, 1003, 1005) and any("clamped" in w for w in p.warnings)
    with pytest.raises(PlanError):
        plan_mod.build("uhd-exr-draft", host=host, input=str(clip), output=str(tmp_path / "a.####.exr"),
                       frames="1001-1003", start=1001)
    with pytest.raises(PlanError):
        plan_mod.build("uhd-exr-draft", host=host, input=str(clip), output=str(tmp_path / "a.####.exr"),
                       frames="ten to twenty")


def test_stage_override_needs_an_existing_stage(tmp_path, host, clip):
    with pytest.raises(PlanError) as e:
        plan_mod.build("uhd-draft", host=host, input=str(clip), output=str(tmp_path / "o.mov"),
                       overrides=("stages.3.steps=30",))
    assert "stage index" in str(e.value)


def test_window_must_fit_the_backend_rule(tmp_path, host, clip):
    preset = write_preset(tmp_path / "t.toml", backend="test-temporal", window=(6, 1))
    with pytest.raises(PlanError) as e:
        plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "a.####.exr"))
    assert "4*n+1" in str(e.value) and "5" in str(e.value)


def test_unknown_preset_lists_the_known_ones(host, tmp_path, clip):
    with pytest.raises(UnknownNameError) as e:
        plan_mod.build("uhd", host=host, input=str(clip), output=str(tmp_path / "o.mov"))
    assert "uhd-draft" in str(e.value)


@pytest.mark.parametrize("w,h,fit,expect", [
    (1920, 1080, "pad", (3840, 2160, 0, 0)),
    (1919, 1079, "pad", (3840, 2160, 0, 0)),  # snapped, not a 1-pixel bar
    (1440, 1080, "pad", (2880, 2160, 480, 0)),  # pillarbox
    (1440, 1080, "crop", (3840, 2880, 0, -360)),
    (1440, 1080, "stretch", (3840, 2160, 0, 0)),
    (2048, 858, "pad", (3840, 1609, 0, 275)),  # scope letterbox
])
def test_fit_geometry(w, h, fit, expect):
    g, _ = plan_mod.fit_geometry(_src(w, h), 3840, 2160, fit)
    assert (g.scale_w, g.scale_h, g.x, g.y) == expect


def test_rotated_source_is_fitted_in_display_orientation():
    g, note = plan_mod.fit_geometry(_src(1920, 1080, rotation=90), 3840, 2160, "pad")
    assert (g.scale_w, g.scale_h, g.rotate) == (1215, 2160, 90) and "padded" in note


def test_memory_plan_shrinks_a_temporal_window_and_reaches_the_digest(tmp_path, host, clip):
    b = host.backend("test-temporal")
    calls = []

    def estimate_memory(plan):
        calls.append(plan.window.size)
        return {"available": True, "fits": True, "choice": {"vae_tile": 256, "window": 5, "offload": "none"},
                "usable_gib": 10.0, "peak_gib": 9.0, "reasoning": ["chosen"]}

    b.estimate_memory = estimate_memory
    preset = write_preset(tmp_path / "t.toml", backend="test-temporal", window=(9, 4))
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "a.####.exr"))
    assert calls == [9] and p.window.size == 5 and p.window.overlap == 4
    assert any("window reduced from 9 to 5" in w for w in p.warnings)
    assert json.loads(p.to_json())["memory_estimate"]["choice"]["vae_tile"] == 256
    b.estimate_memory = lambda plan: {"available": True, "fits": True,
                                      "choice": {"vae_tile": 512, "window": 9, "offload": "model"}}
    p2 = plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "a.####.exr"))
    assert p2.window.size == 9 and p2.digest() != p.digest()  # window and VAE tile change pixels
    b.estimate_memory = lambda plan: {"available": True, "fits": True,
                                      "choice": {"vae_tile": 512, "window": 9, "offload": "none"}}
    p3 = plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "a.####.exr"))
    assert p3.digest() == p2.digest()  # offload does not


def test_float16_is_never_planned_onto_the_cpu(tmp_path, host, clip):
    """The plan chooses float32 on a CPU and says so once; other devices keep float16."""
    kw = dict(host=host, input=str(clip), output=str(tmp_path / "o.mov"), overrides=("dtype=float16",))
    p = plan_mod.build("uhd-draft", device="cpu", **kw)
    assert p.dtype == "float32" and json.loads(p.to_json())["dtype"] == "float32"
    assert [w for w in p.warnings if "float16" in w] == [
        "dtype float16 does not run on the CPU: computing in float32 (use --device cuda for float16)"]
    p = plan_mod.build("uhd-draft", device="cuda:0", **kw)
    assert p.dtype == "float16" and not any("float16" in w for w in p.warnings)
