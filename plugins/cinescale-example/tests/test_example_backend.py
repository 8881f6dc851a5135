"""The example backend on a tiny random SD 1.5-layout model: plan-time
validation, safe loading, the protocol, render and generate, and the core's
conformance suite (copy this file when you start a backend)."""

import numpy as np
import pytest
import torch
from example_testutil import TINY_LADDER, TINY_REFINE, driver, plan_for, save_model, seed_for

from cinescale_example.plugin import ExampleAdapter, dilated_convs
from cinescale_post.contracts.errors import PlanError, WeightsError
from cinescale_post.contracts.engine import WindowJob
from cinescale_post.testing import gradient_frames, run_backend_conformance


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_model(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(tiny_model):
    b = driver()
    b.load(plan_for(tiny_model))
    return b.model


def test_validate_fills_defaults_and_refuses_bad_values():
    b = driver()
    stages, options = b.validate(stages=({"scale": 2},), options={}, size=(1024, 1024), source=None)
    # the model's own key, and the driver's keys with the adapter's declared defaults
    assert options["scheduler"] == "ddim" and options["noise"] == "frame" and options["anchor_lowfreq"] == 0.0
    assert stages[0]["restart"] == 0.3 and stages[0]["fusion"] == "scale-fusion"
    with pytest.raises(PlanError, match="unknown key.*colour"):
        b.validate(stages=(), options={"colour": 1}, size=(64, 64), source=None)
    with pytest.raises(PlanError, match="scheduler"):
        b.validate(stages=(), options={"scheduler": "pndm"}, size=(64, 64), source=None)
    with pytest.raises(PlanError, match="stages.0.steps"):
        b.validate(stages=({"steps": 0},), options={}, size=(64, 64), source=None)


def test_weights_come_only_from_a_local_safetensors_folder(tmp_path, monkeypatch):
    b = driver()
    with pytest.raises(WeightsError, match="--model"):
        b.load(plan_for(None))
    with pytest.raises(WeightsError, match="model_index.json"):
        b.load(plan_for(str(tmp_path / "nowhere")))
    ckpt = tmp_path / "v1-5.ckpt"
    ckpt.write_bytes(b"\x80\x04 pickled")
    with pytest.raises(WeightsError, match="single checkpoint files are not loaded"):
        b.load(plan_for(str(ckpt)))
    # a folder with pickled .bin weights is refused without ever unpickling
    from cinescale_post.testing.tiny import build_tiny_sd15

    build_tiny_sd15(0, text_encoder=False)["unet"].save_pretrained(tmp_path / "bin" / "unet", safe_serialization=False)
    (tmp_path / "bin" / "model_index.json").write_text("{}")
    assert (tmp_path / "bin" / "unet" / "diffusion_pytorch_model.bin").is_file()
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a))
    with pytest.raises(WeightsError, match="safetensors"):
        b.load(plan_for(str(tmp_path / "bin")))
    assert opened == []


def test_model_facts_and_patch_points(loaded):
    info = loaded.model_info
    assert info.base_size == (64, 64) and info.latent_factor == 8 and info.latent_channels == 4
    points = loaded.patch_points
    convs = dict(loaded.unet.named_modules())
    assert points.dilate_convs == dilated_convs(2, 2) and all(n in convs for n in points.dilate_convs)
    assert not any(n.startswith("up_blocks") for n in points.dilate_convs)
    # SDXL's layout (3 blocks) gives exactly FreeScale's nine convolutions
    from cinescale_sdxl.options import SDXL_DILATED_CONVS  # the SDXL plugin's list

    assert dilated_convs(3, 2) == SDXL_DILATED_CONVS
    # the scheduler is the folder's, a fresh copy per stage
    assert type(loaded.make_scheduler()).__name__ == "DDIMScheduler"
    assert loaded.make_scheduler() is not loaded.make_scheduler()


def test_tensor_errors_name_the_expected_layout(loaded):
    with pytest.raises(ValueError, match=r"pixels must be \(B, 3, H, W\)"):
        loaded.encode(torch.zeros(3, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        loaded.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="not loaded"):
        driver().render(WindowJob(frames=gradient_frames(1), size=(64, 64), seed_for=seed_for))


def test_generate_runs_the_ladder_deterministically(tiny_model):
    b = driver()
    plan = plan_for(tiny_model, stages=TINY_LADDER, mode="generate")
    a = b.generate(plan, seed_for)
    assert len(a) == 1 and a[0].shape == (128, 128, 3) and a[0].dtype == np.float32
    assert np.array_equal(a[0], b.generate(plan, seed_for)[0])
    assert np.abs(b.generate(plan, lambda n, tile=0: 5)[0] - a[0]).max() > 1e-3


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_render_refines_each_frame_at_the_window_size(tiny_model, scheduler):
    b = driver()
    b.load(plan_for(tiny_model, options={"scheduler": scheduler}))
    frames = gradient_frames(2)
    out = b.render(WindowJob(frames=frames, size=(128, 96), seed_for=seed_for))
    assert [o.shape for o in out] == [(96, 128, 3)] * 2
    # per-frame seeds: rendering frame 1002 alone gives the same pixels
    alone = b.render(WindowJob(frames=frames[1:], size=(128, 96), seed_for=seed_for))
    assert np.array_equal(alone[0], out[1])


def test_backend_passes_the_conformance_suite(tiny_model):
    report = run_backend_conformance(ExampleAdapter(), plan=plan_for(tiny_model, stages=TINY_REFINE), max_frames=3)
    assert report.ok and report.seeded


def test_the_template_declares_memory_and_a_smoke_model(tiny_model):
    """A copied plugin gets memory planning and ``doctor --smoke``: the
    estimate comes from the folder's configs, the smoke test runs the
    adapter's tiny model through a two-stage cascade."""
    est = driver().estimate_memory(plan_for(tiny_model))
    assert est["available"] is True, est
    assert est["stages"], est
    assert driver().estimate_memory(plan_for(None))["available"] is False
    report = driver().smoke("cpu")
    assert report is not None and report["ok"] is True, report


def test_undeclared_keys_are_refused_and_the_declared_ones_are_typed(tiny_model):
    with pytest.raises(PlanError, match="unknown key.*sheduler") as e:
        driver().validate(stages=(), options={"sheduler": "ddim"}, size=(64, 64), source=None)
    assert "scheduler" in e.value.fix and "noise" in e.value.fix  # both declared lists
    view = driver().model_plan(plan_for(tiny_model, options={"scheduler": "euler"}))
    assert view.options.scheduler == "euler" and "scheduler" not in view.driver_options
    assert view.driver_options["noise"] == "frame" and view.model == tiny_model
