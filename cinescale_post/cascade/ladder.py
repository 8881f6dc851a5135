"""The one denoising loop and the stage ladder driver.

:func:`denoise` is the only sampling loop in the package; every backend and
every stage runs through it. :func:`run_ladder` walks the resolved stages:

* base stage (generate mode, stage 0): noise x ``init_noise_sigma`` (1 when
  the scheduler has none: flow matching starts from pure noise), full
  schedule, no fusion, no dilation, no blend (FreeU may be on);
* upscaled/refine stage: enlarge the previous result (:mod:`.upscale`),
  draw ONE noise tensor, re-noise with the scheduler's own forward process at
  every timestep, resume at the restart index, blend towards the re-noised
  reference with ``phi(t) ** cosine_scale`` at every step, dilate the declared
  convolutions while ``i < dilate_tau``, and apply the stage's fusion to the
  declared attention layers for the whole stage.

Per stage the model takes part through the methods of
:class:`cinescale_post.api.Model`: ``make_scheduler(stage)`` and
``stage_sigmas(stage)`` set the stage's schedule (a DiT's flow shift),
``stage_patches(stage)`` yields handles held for the whole stage, base stage
included (NTK-RoPE, attention temperature), and ``denoisers`` lists every
model that dilation and FreeU go on (two-expert models). The ``model`` of
the functions below is such a model.

Random sources are injectable through :class:`RandomSources`, which also
provides the controlled mode (re-noise tensors passed in, VAE posterior mean,
window jitter off) for number-for-number comparisons.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any, Callable, Sequence

import torch

from cinescale_post.ops.handles import HandleGroup, apply_each
from cinescale_post.cascade.schedule import add_noise_at, cosine_blend, mask_exponent, stage_scheduler
from cinescale_post.contracts.stages import ResolvedStage
from cinescale_post.cascade.sources import RandomSources, StageResult, randn, stage_condition


def _step_kwargs(scheduler: Any, generator: Any) -> dict:
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params else {}


def denoise(model: Any, scheduler: Any, z: torch.Tensor, cond: Any, *, start: int = 0,
            guidance: float = 7.5, ref: Callable[[int], torch.Tensor] | None = None,
            cosine_scale: Any = None, step_patch: Callable[[int], Any] | None = None,
            generator: Any = None, callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """THE denoising loop: from timestep index ``start`` to the end of
    ``scheduler.timesteps`` (``set_timesteps`` already called).

    Per step i: optional blend ``z <- (1 - c1) z + c1 ref(i)`` with
    ``c1 = phi(t_i) ** cosine_scale``; ``step_patch(i)`` is entered around the
    model call (dilation); ``model.predict`` on ``scale_model_input(z, t)``;
    ``scheduler.step``. z: (B, C, [F,] H, W); returns the same shape.
    """
    ts = scheduler.timesteps
    T = int(getattr(scheduler.config, "num_train_timesteps", 1000))
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    kwargs = _step_kwargs(scheduler, generator)
    scale_in = getattr(scheduler, "scale_model_input", None)
    n = len(ts)
    for i in range(start, n):
        t = ts[i]
        if ref is not None and cosine_scale is not None:
            z = cosine_blend(z, ref(i), t, cosine_scale, T)
        ctx = step_patch(i) if step_patch is not None else contextlib.nullcontext()
        with ctx:
            x = scale_in(z, t) if scale_in is not None else z
            out = model.predict(x, t, cond, guidance=guidance)
        z = scheduler.step(out, t, z, return_dict=False, **kwargs)[0]
        if callback is not None:
            callback(i - start + 1, n - start)
    return z


def denoisers(model: Any) -> list:
    """Every model a patch must reach (``Model.denoisers``)."""
    return list(model.denoisers)


def ancestral(scheduler: Any) -> bool:
    """A scheduler whose steps draw noise (diffusers' ``*AncestralDiscreteScheduler``)."""
    return "Ancestral" in type(scheduler).__name__


def run_stage(model: Any, stage: ResolvedStage, cond: Any, rng: RandomSources, prev: StageResult | None, *,
              upscaler: Any = None, fusion: Any = None, mask: Any = None, frames: int | None = None,
              callback: Callable[[int, int], None] | None = None, group: tuple[int, int] = (1, 0)) -> StageResult:
    """Run one resolved stage (see module docstring) and return its latent.
    ``frames``: latent frames of the base stage's noise (video backends).
    ``group``: (frames per group, anchor index) of the batch rows, for group
    fusions such as cross-frame attention."""
    spec = stage.spec
    sched = stage_scheduler(model, stage)
    ts = sched.timesteps
    order = int(getattr(sched, "order", 1))
    info: dict[str, Any] = {"size": stage.size, "steps": spec.steps}
    ref = None
    step_gen = rng.generator_for(stage.index, "step")
    if stage.base or prev is None:
        if not stage.base:
            raise ValueError(f"stage {stage.index} refines a previous result but none was given")
        shape = model.latent_shape(stage.size, frames=frames)
        gen = rng.generator_for(stage.index, "noise")
        noise = rng.base_noise if rng.base_noise is not None else randn(shape, gen, model.device, model.dtype)
        if ancestral(sched) and rng.base_noise is None:
            # the reference (FreeScale's turbo pipeline) draws the initial latents and then every
            # ancestral step's noise from one generator: the steps continue the noise's sequence
            step_gen = gen
        # Flow-matching schedulers have no init_noise_sigma: they start from pure noise.
        z = noise.to(model.device, model.dtype) * getattr(sched, "init_noise_sigma", 1.0)
        start = 0
    else:
        if upscaler is None:
            raise ValueError(f"stage {stage.index} needs an upscaler")
        z0 = upscale_to(model, prev, stage.size, upscaler, rng, stage=stage.index)
        eps = rng.renoise_for(stage.index)
        if eps is None:
            eps = randn(z0.shape, rng.generator_for(stage.index, "renoise"), z0.device, z0.dtype)
        eps = eps.to(z0.device, z0.dtype)
        if tuple(eps.shape) != tuple(z0.shape):
            raise ValueError(f"re-noise tensor of stage {stage.index} has shape {tuple(eps.shape)}, "
                             f"expected {tuple(z0.shape)}")
        noiser = copy.deepcopy(sched)  # pristine: no begin/step index

        def ref(i: int, _z0=z0, _eps=eps, _n=noiser) -> torch.Tensor:
            return add_noise_at(_n, _z0, _eps, ts[i])

        start = stage.restart_index * order
        if start >= len(ts):
            raise ValueError(f"stage {stage.index}: restart index {start} >= {len(ts)} timesteps")
        z = ref(start)
        info["restart_index"] = start
    latent_hw = tuple(z.shape[-2:])

    cos = None
    if not stage.base and spec.cosine_scale is not None:
        cos = spec.cosine_scale
        if mask is not None:
            bg = spec.cosine_scale_bg if spec.cosine_scale_bg is not None else 1.0
            cos = mask_exponent(mask.to(z.device), latent_hw, spec.cosine_scale, bg)
            if z.ndim == 5 and cos.ndim == 4:  # one mask for every latent frame
                cos = cos.unsqueeze(2)

    with HandleGroup(f"stage {stage.index}") as patches:
        fusion_name = stage.fusion
        if fusion_name is not None and fusion is not None:
            patches.add(fusion.apply(model, stage, latent_hw=latent_hw, jitter=rng.jitter, group=group))
            info["fusion"] = fusion_name
        step_patch = None
        points = model.patch_points
        if stage.dilation > 1 and points.dilate_convs:
            from cinescale_post.ops.dilation import DilationSpec, apply_dilation

            dspec = DilationSpec(tuple(points.dilate_convs), int(stage.dilation))
            tau = spec.dilate_tau * order
            models = denoisers(model)

            def step_patch(i: int, _d=dspec, _ms=models, _tau=tau):
                if i >= _tau:
                    return contextlib.nullcontext()
                return apply_each(f"dilation x{_d.factor}", _ms, lambda m: apply_dilation(m, _d))

            info["dilation"] = stage.dilation
        z = denoise(model, sched, z, cond, start=start, guidance=spec.guidance, ref=ref, cosine_scale=cos,
                    step_patch=step_patch, generator=step_gen, callback=callback)
    return StageResult(size=stage.size, latent=z, stage=stage.index, info=info)


def upscale_to(model: Any, prev: StageResult, size: tuple[int, int], upscaler: Any,
               rng: RandomSources, stage: int = 0) -> torch.Tensor:
    from cinescale_post.cascade.upscale import upscale_latent

    return upscale_latent(model, prev, size, upscaler, generator=rng.generator_for(stage, "posterior"),
                          sample=rng.posterior == "sample")


def run_ladder(model: Any, stages: Sequence[ResolvedStage], cond: Any, rng: RandomSources, *,
               init: StageResult | None = None, resolve: Callable[[str, str], Any] | None = None,
               freeu: Any = None, mask: Any = None, keep: str = "last", frames: int | None = None,
               progress: Callable[[float], None] | None = None, group: tuple[int, int] = (1, 0)) -> list[StageResult]:
    """Run every stage in order; returns the last result (``keep="last"``) or
    all of them (``keep="all"``; the reference returns every stage).

    ``init``: the source (pixels or latent) for render mode, None for
    generate. ``resolve(kind, name)`` maps upscaler/fusion names to objects
    (the host's lookup, or ``builtin.lookup.builtin_resolve``); a ladder whose
    stages name none may leave it out. ``freeu``: an
    ``ops.freeu.FreeUSpec`` applied during all stages, or None. ``frames``:
    latent frames of the base stage (video backends; None: ``latent_shape``'s
    default). Each stage runs inside the handles of ``model.stage_patches(stage)``.
    ``cond``: one conditioning, or a ``StageConditions`` (stages with prompts
    of their own). ``group``: see :func:`run_stage`.
    """
    if resolve is None and any(not s.base or s.fusion for s in stages):
        raise ValueError("run_ladder: these stages name upscalers or fusions; pass resolve= (Host.resolve, or "
                         "cinescale_post.builtin.lookup.builtin_resolve)")
    total = sum(len(range(s.restart_index, s.spec.steps)) for s in stages) or 1
    done = [0]
    results: list[StageResult] = []
    prev = init
    with HandleGroup("ladder") as ladder:
        if freeu is not None:
            from cinescale_post.ops.freeu import apply_freeu

            for net in denoisers(model):
                ladder.add(apply_freeu(net, freeu))
        for stage in stages:
            up = None if stage.base else resolve("upscaler", stage.spec.upscaler)
            fu = resolve("fusion", stage.fusion) if stage.fusion else None

            def cb(k: int, n: int, _base=done[0]) -> None:
                if progress is not None:
                    progress(min(1.0, (_base + k) / total))

            with HandleGroup(f"stage {stage.index} patches") as patches:
                # Added one by one, so a generator's earlier handles are removed if a later one fails.
                for handle in model.stage_patches(stage):
                    patches.add(handle)
                res = run_stage(model, stage, stage_condition(cond, stage.index), rng, prev, upscaler=up,
                                fusion=fu, mask=mask, frames=frames, callback=cb, group=group)
            done[0] += stage.spec.steps - stage.restart_index
            results.append(res)
            prev = res
    return results if keep == "all" else results[-1:]


__all__ = ["denoise", "denoisers", "run_ladder", "run_stage", "upscale_to"]
