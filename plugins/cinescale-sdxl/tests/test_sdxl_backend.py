
import numpy as np
import pytest
import torch
from sdxl_testutil import driver, frames_of, make_plan, seed_for, still

from cinescale_post.contracts.errors import PlanError, WeightsError
from cinescale_post.contracts.media import SourceInfo
from cinescale_post.contracts.engine import WindowJob
from cinescale_sdxl.backend import load_pipeline


def test_validate_fills_reference_defaults_and_rejects_bad_values():
    b = driver()
    st, opts = b.validate(stages=({"scale": 1}, {"scale": 2}), options={}, size=(2048, 2048), source=None)
    assert st[1]["restart"] == 0.3 and st[1]["cosine_scale"] == 2.0 and st[1]["dilate_tau"] == 35
    assert st[1]["fusion"] == "scale-fusion" and st[1]["upscaler"] == "vae-bicubic"
    assert opts["freeu"] == {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4} and opts["noise"] == "shot"
    import json

    json.dumps([st, opts])  # JSON-serialisable
    src = SourceInfo(path="x", kind="sequence", format="exr", codec="exr", width=64, height=64, pix_fmt="rgb",
                     bit_depth=16, rate=24, time_base=1, frame_numbers=(1001, 1002))
    assert b.validate(stages=(), options={}, size=(64, 64), source=src)[1]["shot_frame"] == 1001
    for bad in ({"freeu": "yes"}, {"noise": "tile"}, {"posterior": "max"}, {"vae_fp32": 1}, {"colour": 1},
                {"freeu": {"b3": 1.0}}):
        with pytest.raises(PlanError):
            b.validate(stages=(), options=bad, size=(64, 64), source=None)
    with pytest.raises(PlanError, match="stages.0.steps"):
        b.validate(stages=({"steps": -1},), options={}, size=(64, 64), source=None)


def test_loading_errors_are_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="--model"):
        load_pipeline(None, torch.float32)
    with pytest.raises(WeightsError, match="not found"):
        load_pipeline(str(tmp_path / "nope"), torch.float32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"), torch.float32)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(WeightsError, match="refused"):
        load_pipeline(str(ckpt), torch.float32)
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot load"):
        load_pipeline(str(bad), torch.float32, config=str(tmp_path / "empty"))
    assert WeightsError("x").exit_code == 6


def test_load_from_disk_reports_model_facts(tiny_model):
    b = driver()
    plan = make_plan(tiny_model)
    b.load(plan)
    info = b.model.model_info
    assert info.base_size == (64, 64) and info.latent_factor == 8 and info.size_multiple == 8
    pp = b.model.patch_points
    assert len(pp.dilate_convs) == 9 and pp.freeu is True
    assert b.model.pipe.vae.use_tiling
    assert len(b.weight_files(plan)) >= 4
    assert [s.size for s in b.ladder("generate", (128, 128))] == [(64, 64), (128, 128)]


def test_fp16_keeps_vae_in_fp32_and_bf16_loads(tiny_model):
    b = driver()
    b.load(make_plan(tiny_model, dtype="float16"))
    assert b.model.pipe.unet.dtype == torch.float16 and b.model.pipe.vae.dtype == torch.float32
    b.load(make_plan(tiny_model, dtype="bfloat16"))
    assert b.model.pipe.unet.dtype == torch.bfloat16


def test_generate_end_to_end_is_deterministic(tiny_model):
    b = driver()
    plan = make_plan(tiny_model)
    b.load(plan)
    a = b.generate(plan, seed_for)
    again = b.generate(plan, seed_for)
    assert len(a) == 1 and a[0].shape == (128, 128, 3) and a[0].dtype == np.float32
    assert 0.0 <= a[0].min() and a[0].max() <= 1.0
    assert np.array_equal(a[0], again[0])
    other = b.generate(plan, lambda n, tile=0: seed_for(n) + 1)
    assert np.abs(other[0] - a[0]).max() > 1e-3
    # a fresh backend loading the same folder gives the same pixels
    fresh = driver()
    fresh.load(plan)
    assert np.allclose(fresh.generate(plan, seed_for)[0], a[0], atol=1e-5)


def test_generate_keeps_every_stage_on_request(tiny_model):
    b = driver()
    plan = make_plan(tiny_model, options={"keep_stages": True})
    b.load(plan)
    imgs = b.generate(plan, seed_for)
    assert [im.shape for im in imgs] == [(128, 128, 3)]  # the output; earlier stages on the side
    assert {k: [im.shape for im in v] for k, v in b.stage_outputs().items()} == {0: [(64, 64, 3)]}
    plain = driver()
    plain_plan = make_plan(tiny_model)
    plain.load(plain_plan)
    assert np.array_equal(plain.generate(plain_plan, seed_for)[0], imgs[0]) and plain.stage_outputs() == {}


def _render(b, images, size=(128, 128), first=1001):
    job = WindowJob(frames=frames_of(images, first), size=size, seed_for=seed_for)
    return b.render(job)


def test_render_end_to_end_shot_noise_keeps_static_content_still(tiny_model):
    stages = ({"size": "output", "steps": 3, "restart_step": 1, "dilate_tau": 2, "guidance": 5.0},)
    b = driver()
    plan = make_plan(tiny_model, stages=stages, mode="render")
    b.load(plan)
    img = still(0)
    out = _render(b, [img, img])
    assert len(out) == 2 and out[0].shape == (128, 128, 3)
    assert np.array_equal(out[0], out[1])  # same frame, same noise field
    # a later window of the same shot uses the same noise too (shot seed, not window seed)
    later = _render(b, [img], first=1050)
    assert np.array_equal(later[0], out[0])
    again = _render(b, [img, img])
    assert np.array_equal(again[0], out[0])
    # per-frame noise: the same content renders differently on different frames
    plan2 = make_plan(tiny_model, stages=stages, mode="render", options={"noise": "frame"})
    b2 = driver()
    b2.load(plan2)
    per = _render(b2, [img, img])
    assert np.abs(per[0] - per[1]).max() > 1e-3


def test_render_output_size_and_refine_strength(tiny_model):
    """Output at job.size; a late restart (low strength) stays closer to the input than an early one."""
    img = still(1)

    def run(restart):
        b = driver()
        stages = ({"size": "output", "steps": 10, "restart_step": restart, "guidance": 1.0, "fusion": "none",
                   "dilation": False},)
        b.load(make_plan(tiny_model, stages=stages, mode="render", size=(64, 64),
                         options={"freeu": False, "posterior": "mean", "anchor_lowfreq": 0.0}))
        out = _render(b, [img], size=(64, 64))[0]
        with torch.no_grad():  # the tiny random VAE is not an identity: compare to its round trip
            px = torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1
            rt = ((b.model.decode(b.model.encode(px, sample=False)) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        return out, np.abs(out - rt).mean()

    late, near = run(9)
    early, far = run(1)
    assert late.shape == (64, 64, 3)
    assert near < far, (near, far)


def test_missing_text_encoders_error(tmp_path):
    from cinescale_sdxl.tiny import save_tiny_sdxl

    path = save_tiny_sdxl(tmp_path / "noenc", text_encoders=False)
    b = driver()
    plan = make_plan(str(path))
    b.load(plan)
    with pytest.raises(WeightsError, match="text encoders"):
        b.generate(plan, seed_for)


def test_smoke_proves_wiring():
    r = driver().smoke("cpu")
    assert r["ok"] and r["output_shapes"] == [[64, 64, 3], [128, 128, 3]]
    assert r["stages"][1]["dilation"] == 2 and r["stages"][1]["fusion"] == "scale-fusion"
    assert "not picture quality" in r["note"]
