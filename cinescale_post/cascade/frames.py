"""Frame-, image- and window-level entry points built on :func:`.ladder.run_ladder`,
shared by every diffusion backend: numpy images in, numpy images out
(:func:`refine_video`: a pixel window in, decoded pixels out).

Images at the boundary are (H, W, 3) float32 in [0, 1] (``contracts.media``);
inside they are torch (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from cinescale_post.cascade.ladder import run_ladder
from cinescale_post.cascade.sources import RandomSources, StageResult
from cinescale_post.contracts.stages import ResolvedStage
from cinescale_post.ops.pixels import to_images, to_pixels


def refine_frames(model: Any, frames: Sequence[np.ndarray], stages: Sequence[ResolvedStage], cond: Any,
                  rng_for: Callable[[int], RandomSources], *, out_size: tuple[int, int] | None = None,
                  freeu: Any = None, mask: Any = None, resolve: Callable | None = None,
                  progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
    """Render mode: every frame is the base stage; each stage refines it.
    ``rng_for(i)`` gives the random sources of frame ``i`` (the same seed for
    every frame of a shot keeps static content still). ``mask``: one detail
    mask for every frame, or a list of one per frame (a matte)."""
    outs = []
    n = len(frames)
    for i, frame in enumerate(frames):
        px = to_pixels([frame], model.device, _vae_dtype(model))
        init = StageResult(size=(px.shape[-1], px.shape[-2]), pixels=px)

        def prog(f: float, _i=i) -> None:
            if progress is not None:
                progress((_i + f) / n)

        res = run_ladder(model, stages, cond, rng_for(i), init=init, resolve=resolve, freeu=freeu,
                         mask=mask[i] if isinstance(mask, list) else mask, progress=prog)[-1]
        outs.extend(to_images(model.decode(res.latent), out_size))
    return outs


def refine_video(model: Any, frames: torch.Tensor, stages: Sequence[ResolvedStage], cond: Any,
                 rng: RandomSources, *, freeu: Any = None, mask: Any = None, resolve: Callable | None = None,
                 progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Render mode for one video window denoised as a whole (a video model).

    ``frames``: (B, 3, F, H, W) in [-1, 1], F a length the model's VAE takes
    (pad before calling); it is the base, each stage refines it. Returns the
    decoded last stage, (B, 3, F, H', W') in about [-1, 1], for the model to
    fit to the output (crop or resize) and turn into frames.
    """
    if frames.ndim != 5:
        raise ValueError(f"refine_video takes a (B, 3, F, H, W) window, got shape {tuple(frames.shape)}")
    temporal = int(model.model_info.temporal_factor)
    latent_frames = (int(frames.shape[2]) - 1) // temporal + 1
    init = StageResult(size=(frames.shape[-1], frames.shape[-2]), pixels=frames)
    res = run_ladder(model, stages, cond, rng, init=init, resolve=resolve, freeu=freeu, mask=mask,
                     frames=latent_frames, progress=progress)[-1]
    return model.decode(res.latent)


def generate_images(model: Any, stages: Sequence[ResolvedStage], cond: Any, rngs: Sequence[RandomSources], *,
                    out_size: tuple[int, int] | None = None, freeu: Any = None, mask: Any = None,
                    resolve: Callable | None = None, keep: str = "last",
                    progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
    """Generate mode: one image per entry of ``rngs``; ``keep="all"`` returns
    every stage's image (at its own size) instead of the last one."""
    outs = []
    for i, rng in enumerate(rngs):
        def prog(f: float, _i=i) -> None:
            if progress is not None:
                progress((_i + f) / len(rngs))

        results = run_ladder(model, stages, cond, rng, init=None, resolve=resolve, freeu=freeu, mask=mask,
                             keep=keep, progress=prog)
        for r in results:
            outs.extend(to_images(model.decode(r.latent), out_size if keep == "last" else None))
    return outs


def _vae_dtype(model: Any) -> Any:
    return model.vae_dtype or model.dtype or torch.float32


__all__ = ["generate_images", "refine_frames", "refine_video"]
