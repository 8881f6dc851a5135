"""SDXL-Turbo as the reference's turbo pipeline (issue 12): detected from the
UNet config (sample_size 64 = a 512 base) or chosen by preset; fusion windows
keyed to 512, dilation W // 1024, restart 0.5, 4 steps, no CFG."""

import tomllib
from importlib import resources

import pytest

from cinescale_sdxl import backend as sdxl


def _pipe(sample_size):
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from cinescale_sdxl.tiny import TINY_UNET_CONFIG, build_tiny_sdxl

    comps = build_tiny_sdxl(0, text_encoders=False)
    torch.manual_seed(0)
    comps["unet"] = UNet2DConditionModel(**{**TINY_UNET_CONFIG, "sample_size": sample_size}).eval()
    return StableDiffusionXLPipeline(**comps)


def _preset(name):
    return tomllib.loads((resources.files("cinescale_sdxl") / "presets" / f"{name}.toml").read_text())


def test_turbo_is_detected_from_the_unet_config():
    turbo = sdxl.SDXLModel(_pipe(64), options=sdxl.SDXLOptions.from_dict({}))
    assert turbo.turbo and turbo.model_info.base_size == (512, 512)
    assert turbo.model_info.dilation_base == (1024, 1024)
    plain = sdxl.SDXLModel(_pipe(8), options=sdxl.SDXLOptions.from_dict({}))
    assert not plain.turbo and plain.model_info.dilation_base is None
    forced = sdxl.SDXLModel(_pipe(8), options=sdxl.SDXLOptions.from_dict({"turbo": True}))
    assert forced.model_info.base_size == (512, 512)
    with pytest.raises(Exception, match="turbo"):
        sdxl.SDXLOptions.from_dict({"turbo": "yes"})


@pytest.mark.parametrize("name, sizes, dil", [
    ("sdxl-turbo-2k-still", [512, 1024, 2048], [1, 1, 2]),
    ("sdxl-turbo-4k-still", [512, 1024, 2048, 4096], [1, 1, 2, 4]),
])
def test_turbo_presets_resolve_to_the_reference_turbo_ladder(name, sizes, dil):
    from cinescale_post.contracts.stages import parse_stages, resolve_ladder
    from cinescale_post.ops.fusion import window_geometry

    data = _preset(name)
    assert data["backend_options"]["turbo"] is True
    model = sdxl.SDXLModel(_pipe(8), options=sdxl.SDXLOptions.from_dict(data["backend_options"]))
    info = model.model_info
    lad = resolve_ladder(parse_stages(data["stages"]), mode="generate", base_size=info.base_size,
                         output=(data["output"]["width"], data["output"]["height"]), multiple=8,
                         dilation_base=info.dilation_base)
    assert [s.size[0] for s in lad] == sizes
    assert [s.dilation for s in lad] == dil  # W // 1024, not W // 512
    assert [s.restart_index for s in lad] == [0] + [2] * (len(sizes) - 1)  # int(0.5 * 4)
    assert all(s.spec.steps == 4 and s.spec.guidance == 0.0 for s in lad)
    # fusion windows keyed to a 512 base: at 1024 the level grid of 64x64 tokens gets 32-token windows
    g = window_geometry((64, 64), (1024, 1024), base=info.base_size[0], base_latent=info.base_size[0] // 8)
    assert g.scale == (2, 2) and g.window == (32, 32) and g.counts == (3, 3)


@pytest.mark.parametrize("ancestral", [True, False])
def test_ancestral_steps_draw_from_the_base_noise_generator_as_the_reference(tiny_model, ancestral):
    """Issue 25: FreeScale's turbo pipeline draws the initial latents and every
    ancestral step's noise from one generator. From a seed, stage 0's steps now
    continue the base noise's generator (its state after the stage is a fresh
    generator's after 1 + steps draws); a scheduler without step noise leaves
    it after the one draw."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    from cinescale_post.cascade.sources import RandomSources
    from cinescale_post.cascade.streams import stream_generator
    from cinescale_post.testing import model_driver
    from cinescale_sdxl.backend import load_pipeline

    pipe = load_pipeline(tiny_model, torch.float32)
    kind = EulerAncestralDiscreteScheduler if ancestral else EulerDiscreteScheduler
    pipe.scheduler = kind.from_config(pipe.scheduler.config)
    model = sdxl.SDXLModel(pipe, options=sdxl.SDXLOptions.from_dict({"freeu": False}))
    steps = 3
    d = model_driver(model, adapter_id="sdxl", stages=[{"size": [64, 64], "steps": steps, "guidance": 1.0}])
    lad = d.ladder("generate", (64, 64))
    rng = RandomSources.from_seed(11)
    with torch.no_grad():
        cond = d.condition("a cat", "", size=(64, 64), guidance=1.0)
        d.run_cascade(lad, cond, rng)
    ref = stream_generator(11, 0, "noise")
    shape = model.latent_shape((64, 64))
    for _ in range(1 + (steps if ancestral else 0)):
        torch.randn(shape, generator=ref)
    assert torch.equal(rng.generator_for(0, "noise").get_state(), ref.get_state())
