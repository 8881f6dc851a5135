"""The video-layout path of the render driver: a window denoised as a whole
(a video model), padded to the model's frame rule, with the noise policy's
tensors or a controlled-mode noise file. Torch is imported when a window renders.
"""

from __future__ import annotations

from cinescale_post.contracts.engine import WindowJob
from cinescale_post.render.loading import padded_length


def video_frames(model, pixels, size: tuple[int, int]) -> list:
    """Decoded (1, 3, F, H, W) pixels -> F (h, w, 3) float32 images at ``size``:
    the model's own ``to_frames``, or a bicubic resize where it offers none."""
    frames = model.to_frames(pixels, size)
    if frames is None:
        from cinescale_post.ops.pixels import to_images

        frames = to_images(pixels[0].permute(1, 0, 2, 3), size)
    return frames


def video_sources(driver, seed: int, stages, frames: int):
    """Every noise tensor of one video cascade, by the noise policy (or
    read from ``noise_file``: controlled mode)."""
    from cinescale_post.cascade.noise import from_file, policy

    opts = driver.options
    if opts.noise_file:
        return from_file(opts.noise_file, seed, stages)
    return policy(opts.noise).draw(driver._need(), seed, stages, frames, opts.posterior)


def render_video(driver, job: WindowJob) -> list:
    import torch

    from cinescale_post.cascade.frames import refine_video
    from cinescale_post.ops.pixels import video_to_pixels
    from cinescale_post.contracts.stages import snap

    model = driver.model
    frames = [f.rgb for f in job.frames]
    n = len(frames)
    total = padded_length(n, driver.frame_rule)
    frames = frames + [frames[-1]] * (total - n)
    info = model.model_info
    h0, w0 = frames[0].shape[:2]
    src_size = (snap(w0, info.size_multiple), snap(h0, info.size_multiple))
    stages = driver.ladder("render", tuple(job.size))
    guidance = max(s.spec.guidance for s in stages)
    cond = driver.conditions(stages, size=src_size, guidance=guidance)
    seed = job.seed_for(job.frames[0].number)
    f_lat = (total - 1) // int(info.temporal_factor) + 1
    px = video_to_pixels(frames, src_size, model.device, torch.float32)
    rng = video_sources(driver, seed, stages, f_lat)
    t = int(info.temporal_factor)  # latent frame 0 is frame 0; latent k covers frames t(k-1)+1 .. tk
    groups = [[0]] + [[min(i, n - 1) for i in range(t * (k - 1) + 1, t * k + 1)] for k in range(1, f_lat)]
    decoded = refine_video(model, px, stages, cond, rng, progress=job.progress, resolve=driver.resolve,
                           freeu=model.freeu(), mask=driver.job_mask(job, latent_groups=groups))
    return video_frames(model, decoded, tuple(job.size))[:n]


__all__ = ["render_video", "video_frames", "video_sources"]
