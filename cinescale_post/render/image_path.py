"""The image-layout path of the render driver: a window's frames refined one by
one, with the noise policy (shot, frame, flow), cross-frame attention and
low-frequency anchoring (the temporal post-ops of an image model on video).

Functions of ``driver``, the :class:`~cinescale_post.render.driver.RenderDriver` of one render, which calls them from
``render``. Torch is imported when a window renders.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

from cinescale_post.contracts.engine import WindowJob
from cinescale_post.render.options import CROSS_FRAME_FUSION

log = logging.getLogger("cinescale_post.render.driver")


def shot_seed_frame(driver, job: WindowJob) -> int:
    key = driver.options.shot_frame
    if key is None:  # no source at plan time: the first frame of the render
        selected = tuple(driver.plan.frames) if driver.plan is not None else ()
        key = selected[0] if selected else job.frames[0].number
    return key


def render_images(driver, job: WindowJob) -> list:
    from cinescale_post.cascade.sources import RandomSources
    from cinescale_post.cascade.frames import refine_frames

    model = driver.model
    opts = driver.options
    stages = driver.ladder("render", tuple(job.size))
    frames = [f.rgb for f in job.frames]
    h0, w0 = frames[0].shape[:2]
    guidance = max(s.spec.guidance for s in stages)
    cond = driver.conditions(stages, size=(w0, h0), guidance=guidance)
    shot_key = shot_seed_frame(driver, job)
    cross = opts.cross_frame or any(s.fusion == CROSS_FRAME_FUSION for s in stages)
    from cinescale_post.cascade.noise import policy

    if not policy(opts.noise).explicit and not cross:
        def rng_for(i: int) -> RandomSources:
            key = shot_key if opts.noise == "shot" else job.frames[i].number
            return RandomSources.from_seed(job.seed_for(key), jitter=opts.jitter, posterior=opts.posterior)

        outs = refine_frames(model, frames, stages, cond, rng_for, out_size=tuple(job.size), freeu=model.freeu(),
                             progress=job.progress, resolve=driver.resolve,
                             mask=[driver.job_mask(job, [i]) for i in range(len(frames))] if job.mattes else driver.mask)
    else:
        outs = render_temporal(driver, job, stages, cond, shot_key, cross)
    if opts.anchor_lowfreq > 0.0:
        outs = anchor_outputs(driver, outs, frames)
    return outs


def warn_key(driver, numbers: list, every: int) -> None:
    if driver._warned_key:
        return
    driver._warned_key = True  # once per render: every window of a badly laid-out plan would repeat it
    log.warning("frames %s: their key frames (every %d source frames) are not in this window, so they are "
                "anchored at the window's first frame; fix: window.size a multiple of key_every, or --handles "
                "%d", numbers, every, every - 1)


def temporal_fields(driver, frames: Sequence[Any], seed_for, stages, shot_key: int, cross: bool = False):
    """Re-noise fields and key-frame positions of ``frames`` (see
    :func:`.noise.image_fields`)."""
    from cinescale_post.cascade.noise import image_fields

    opts = driver.options
    warn = functools.partial(warn_key, driver) if (opts.noise == "flow" or cross) else None
    return image_fields(driver._need(), frames, seed_for, stages, shot_key, noise=opts.noise,
                        key_every=opts.key_every, flow=opts.flow, flow_warp=opts.flow_warp, warn=warn)


def render_temporal(driver, job: WindowJob, stages, cond, shot_key: int, cross: bool) -> list:
    """Flow noise and/or cross-frame attention. Cross-frame renders each
    frame in a batch of two, [key frame, frame] (the key frame alone for
    itself), so a frame's pixels never depend on which other frames share
    its window. ``job.lookbehind`` is used for flow and key frames only."""
    import random

    import torch

    from cinescale_post.ops.handles import HandleGroup
    from cinescale_post.cascade.sources import RandomSources, StageResult
    from cinescale_post.ops.pixels import to_images, to_pixels

    model = driver.model
    opts = driver.options
    behind = list(job.lookbehind or ())
    frames = behind + list(job.frames)
    fields, key_pos = temporal_fields(driver, frames, job.seed_for, stages, shot_key, cross)
    out_size = tuple(job.size)
    n = len(job.frames)
    outs: list = []
    for j in range(n):
        p = len(behind) + j
        group = [key_pos[p], p] if (cross and key_pos[p] != p) else [p]
        post_keys = [shot_key if opts.noise in ("shot", "flow") else frames[q].number for q in group]
        gens = [torch.Generator("cpu").manual_seed(int(job.seed_for(k))) for k in post_keys]
        jit_seed = int(job.seed_for(post_keys[-1]))
        rng = RandomSources(generator=gens[0] if len(gens) == 1 else gens,
                            jitter=random.Random(jit_seed * 7919 + 17) if opts.jitter else None,
                            posterior=opts.posterior,
                            renoise=[torch.cat([fields[q][s] for q in group]) for s in range(len(stages))])
        px = to_pixels([frames[q].rgb for q in group], model.device, model.vae_dtype or model.dtype)
        init = StageResult(size=(px.shape[-1], px.shape[-2]), pixels=px)
        frame_group = (len(group), 0)

        def prog(f: float, _j=j) -> None:
            job.progress((_j + f) / n)

        with HandleGroup("temporal") as patches:
            if opts.cross_frame:
                patches.add(driver.resolve("fusion", CROSS_FRAME_FUSION).apply(model, None, latent_hw=None,
                                                                             group=frame_group))
            res = driver.run_cascade(stages, cond, rng, init=init, progress=prog, group=frame_group,
                                     mask=driver.job_mask(job, [j]))[-1]
        outs.append(to_images(model.decode(res.latent[-1:]), out_size)[0])
    return outs


def anchor_outputs(driver, outs: Sequence, frames: Sequence) -> list:
    """Low-frequency anchoring of finished pictures to their source frames:
    (H, W, 3) float32 in [0, 1] each, source (h, w, 3); the source is
    upsampled bicubically and ``anchor_sigma`` is scaled by H/h, W/w."""
    import numpy as np
    import torch

    from cinescale_post.ops.temporal import anchor_low_frequencies
    from cinescale_post.ops.pixels import resize

    opts = driver.options
    res = []
    for img, src in zip(outs, frames):
        H, W = img.shape[:2]
        h, w = src.shape[:2]
        r = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        s = resize(torch.from_numpy(np.ascontiguousarray(src[..., :3], dtype=np.float32)).permute(2, 0, 1)[None],
                   (W, H), "bicubic")
        sigma = (opts.anchor_sigma * H / h, opts.anchor_sigma * W / w)
        a = anchor_low_frequencies(r, s, opts.anchor_lowfreq, sigma, opts.anchor_filter)
        res.append(np.ascontiguousarray(a[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy(), dtype=np.float32))
    return res


__all__ = ["anchor_outputs", "render_images", "render_temporal", "shot_seed_frame", "temporal_fields"]
