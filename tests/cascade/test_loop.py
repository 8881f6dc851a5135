import functools
import random

import pytest
import torch

from cinescale_post.cascade.ladder import denoise, run_ladder as _run_ladder, run_stage
from cinescale_post.cascade.sources import RandomSources, StageResult
from cinescale_post.contracts.stages import parse_stages, resolve_ladder
from cinescale_post.ops.dilation import select_convs
from cinescale_post.ops.freeu import FreeUSpec

from cinescale_post.builtin.lookup import builtin_resolve

# the ladder looks upscalers and fusions up through the lookup a host would pass
run_ladder = functools.partial(_run_ladder, resolve=builtin_resolve)


def _ladder(specs, mode="generate", output=(128, 128)):
    return resolve_ladder(parse_stages(specs), mode=mode, base_size=(64, 64), output=output, multiple=32)


def _pipe(backend, cls):
    return cls(unet=backend.unet, vae=backend.vae, scheduler=backend.make_scheduler(), tokenizer=None,
               tokenizer_2=None, text_encoder=None, text_encoder_2=None)


def _embeds(cond):
    pe, pooled, _ = cond["pos"]
    return dict(prompt_embeds=pe, pooled_prompt_embeds=pooled, negative_prompt_embeds=torch.zeros_like(pe),
                negative_pooled_prompt_embeds=torch.zeros_like(pooled))


def test_refine_stage_without_fusion_dilation_equals_diffusers_img2img(backend):
    """One stage, fusion/dilation/blend off == StableDiffusionXLImg2ImgPipeline on the same
    model, seed and timesteps (restart 3 of 10 == strength 0.7)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    cond = backend.condition("a cat", size=(64, 64), guidance=5.0)
    stage = _ladder([{"size": [64, 64], "steps": 10, "restart_step": 3, "guidance": 5.0, "fusion": "none",
                      "dilation": False, "cosine_scale": None, "upscaler": "latent-nearest"}],
                    mode="render", output=(64, 64))[0]
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(11))
    rng = RandomSources(generator=torch.Generator().manual_seed(11), renoise=[eps])
    with torch.no_grad():
        ours = run_stage(backend, stage, cond, rng, StageResult(size=(64, 64), latent=z0),
                         upscaler=__import__("cinescale_post.builtin.lookup", fromlist=["x"]).builtin_resolve(
                             "upscaler", "latent-nearest")).latent
        pipe = _pipe(backend, StableDiffusionXLImg2ImgPipeline)
        theirs = pipe(image=z0, strength=0.7, num_inference_steps=10, guidance_scale=5.0, output_type="latent",
                      generator=torch.Generator().manual_seed(11), **_embeds(cond)).images
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_base_stage_equals_diffusers_text_to_image(backend):
    from diffusers import StableDiffusionXLPipeline

    cond = backend.condition("a cat", size=(64, 64), guidance=5.0)
    lad = _ladder([{"scale": 1, "steps": 6, "guidance": 5.0}], output=(64, 64))
    with torch.no_grad():
        ours = run_ladder(backend, lad, cond, RandomSources.from_seed(3))[-1].latent
        pipe = _pipe(backend, StableDiffusionXLPipeline)
        theirs = pipe(height=64, width=64, num_inference_steps=6, guidance_scale=5.0, output_type="latent",
                      generator=torch.Generator().manual_seed(3), **_embeds(cond)).images
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


TWO = [{"scale": 1, "steps": 4, "guidance": 5.0},
       {"scale": 2, "steps": 4, "restart_step": 1, "dilate_tau": 3, "guidance": 5.0}]


def test_two_stage_cascade_is_deterministic_and_patches_are_active(backend):
    lad = _ladder(TWO)
    cond = backend.condition("x", size=(64, 64), guidance=5.0)
    unet = backend.unet
    conv = dict(unet.named_modules())["mid_block.resnets.0.conv1"]
    dil_trace = []
    hook = conv.register_forward_pre_hook(lambda m, a: dil_trace.append(m.dilation[0]))
    calls = []
    orig_predict = backend.predict

    def counting_predict(x, t, c, guidance):
        procs = unet.attn_processors
        calls.append(sum(type(p).__name__ == "ScaleFusionAttnProcessor" for p in procs.values()))
        return orig_predict(x, t, c, guidance=guidance)

    backend.predict = counting_predict
    try:
        with torch.no_grad():
            res = run_ladder(backend, lad, cond, RandomSources.from_seed(1), keep="all",
                             freeu=FreeUSpec(channels=(64, 48)))
    finally:
        backend.predict = orig_predict
        hook.remove()
    assert [r.latent.shape[-1] for r in res] == [8, 16]
    assert calls == [0, 0, 0, 0, 17, 17, 17]  # fusion only in the upscaled stage
    assert dil_trace == [1, 1, 1, 1, 2, 2, 1]  # dilation for step index 1, 2 < tau=3 only
    with torch.no_grad():
        again = run_ladder(backend, lad, cond, RandomSources.from_seed(1), freeu=FreeUSpec(channels=(64, 48)))
        other = run_ladder(backend, lad, cond, RandomSources.from_seed(2), freeu=FreeUSpec(channels=(64, 48)))
    assert torch.equal(again[-1].latent, res[-1].latent)
    assert not torch.allclose(other[-1].latent, res[-1].latent, atol=1e-3)


def test_exception_inside_the_loop_leaves_the_model_unpatched(backend):
    unet = backend.unet
    procs = dict(unet.attn_processors)
    convs = select_convs(unet, backend.patch_points.dilate_convs)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = backend.condition("x", size=(64, 64), guidance=5.0)
    with torch.no_grad():
        ref = backend.predict(x, torch.tensor(500.0), cond, guidance=5.0)
    orig = backend.predict
    n = [0]

    def failing(*a, **k):
        n[0] += 1
        if n[0] == 6:  # second step of the upscaled stage, patches active
            assert any(c.dilation != (1, 1) for _, c in convs)
            raise RuntimeError("simulated CUDA error")
        return orig(*a, **k)

    backend.predict = failing
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            with torch.no_grad():
                run_ladder(backend, _ladder(TWO), cond, RandomSources.from_seed(1), freeu=FreeUSpec(channels=(64, 48)))
    finally:
        backend.predict = orig
    assert dict(unet.attn_processors) == procs
    assert all(c.dilation == (1, 1) and c.padding == (1, 1) for _, c in convs)
    assert all(not m._forward_pre_hooks for m in unet.modules())
    with torch.no_grad():
        assert torch.equal(backend.predict(x, torch.tensor(500.0), cond, guidance=5.0), ref)


def test_controlled_mode_is_independent_of_the_generator(backend):
    cond = backend.condition("x", size=(64, 64), guidance=5.0)
    lad = _ladder([{"size": [128, 128], "steps": 3, "restart_step": 1}], mode="render")
    eps = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    px = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    outs = []
    for seed in (0, 1):
        rng = RandomSources.controlled(renoise=[eps], seed=seed)
        with torch.no_grad():
            outs.append(run_ladder(backend, lad, cond, rng, init=StageResult(size=(64, 64), pixels=px))[-1].latent)
    assert torch.equal(outs[0], outs[1])
    # and the reference mode (posterior sample + jitter) does depend on it
    with torch.no_grad():
        a = run_ladder(backend, lad, cond, RandomSources(torch.Generator().manual_seed(0), random.Random(0),
                                                         renoise=[eps]), init=StageResult((64, 64), pixels=px))
        b = run_ladder(backend, lad, cond, RandomSources(torch.Generator().manual_seed(1), random.Random(0),
                                                         renoise=[eps]), init=StageResult((64, 64), pixels=px))
    assert not torch.equal(a[-1].latent, b[-1].latent)


def test_skip_residual_changes_the_result(backend):
    cond = backend.condition("x", size=(64, 64), guidance=5.0)
    px = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    outs = []
    for cs in (None, 2.0):
        lad = _ladder([{"size": [64, 64], "steps": 4, "restart_step": 1, "cosine_scale": cs, "fusion": "none"}],
                      mode="render", output=(64, 64))
        with torch.no_grad():
            outs.append(run_ladder(backend, lad, cond, RandomSources.from_seed(0),
                                   init=StageResult((64, 64), pixels=px))[-1].latent)
    assert not torch.allclose(outs[0], outs[1], atol=1e-4)


class _VideoBackend:
    """Fake DiT-like backend: 5-D latents, flow matching, predicts a fixed velocity."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self):
        self.seen = []

    def predict(self, x, t, cond, *, guidance):
        self.seen.append((tuple(x.shape), float(t)))
        return torch.full_like(x, 0.5)


def test_the_loop_is_generic_over_rank_and_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    s.set_timesteps(5)
    b = _VideoBackend()
    z = torch.zeros(1, 16, 3, 4, 4)
    out = denoise(b, s, z, None, start=2, guidance=1.0)
    assert out.shape == z.shape and len(b.seen) == 3
    # Euler flow step: x += v (sigma_next - sigma); from start 2 to the end sum = -sigma_2
    assert torch.allclose(out, torch.full_like(z, 0.5 * float(-s.sigmas[2])), atol=1e-5)
