"""Frame-, image- and window-level entry points built on :func:`.loop.run_ladder`,
shared by every diffusion backend: numpy images in, numpy images out
(:func:`refine_video`: a pixel window in, decoded pixels out).

Images at the boundary are (H, W, 3) float32 in [0, 1] (``contracts.media``);
inside they are torch (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from cinescale_post.cascade.ladder import RandomSources, StageResult, run_ladder
from cinescale_post.contracts.stages import ResolvedStage
from cinescale_post.cascade.upscale import resize


def to_pixels(images: Sequence[np.ndarray], device: Any = "cpu", dtype: Any = torch.float32) -> torch.Tensor:
    """list of (H, W, 3) float in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.float32)[..., :3] for im in images])
    return (torch.from_numpy(arr).permute(0, 3, 1, 2) * 2.0 - 1.0).to(device=device, dtype=dtype)


def to_images(pixels: torch.Tensor, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> list of (H, W, 3) float32 in [0, 1]
    (bicubic-resized to ``size`` = (width, height) first if it differs)."""
    x = pixels.float()
    if size is not None and (x.shape[-1], x.shape[-2]) != (size[0], size[1]):
        x = resize(x, size, "bicubic")
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    return [np.ascontiguousarray(im.permute(1, 2, 0).cpu().numpy(), dtype=np.float32) for im in x]


def refine_frames(backend: Any, frames: Sequence[np.ndarray], stages: Sequence[ResolvedStage], cond: Any,
                  rng_for: Callable[[int], RandomSources], *, out_size: tuple[int, int] | None = None,
                  freeu: Any = None, mask: Any = None, resolve: Callable | None = None,
                  progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
    """Render mode: every frame is the base stage; each stage refines it.
    ``rng_for(i)`` gives the random sources of frame ``i`` (the same seed for
    every frame of a shot keeps static content still)."""
    outs = []
    n = len(frames)
    for i, frame in enumerate(frames):
        px = to_pixels([frame], backend.device, _vae_dtype(backend))
        init = StageResult(size=(px.shape[-1], px.shape[-2]), pixels=px)

        def prog(f: float, _i=i) -> None:
            if progress is not None:
                progress((_i + f) / n)

        res = run_ladder(backend, stages, cond, rng_for(i), init=init, resolve=resolve, freeu=freeu,
                         mask=mask, progress=prog)[-1]
        outs.extend(to_images(backend.decode(res.latent), out_size))
    return outs


def refine_video(backend: Any, frames: torch.Tensor, stages: Sequence[ResolvedStage], cond: Any,
                 rng: RandomSources, *, freeu: Any = None, mask: Any = None, resolve: Callable | None = None,
                 progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Render mode for one video window denoised as a whole (a video model).

    ``frames``: (B, 3, F, H, W) in [-1, 1], F a length the backend's VAE takes
    (pad before calling); it is the base, each stage refines it. Returns the
    decoded last stage, (B, 3, F, H', W') in about [-1, 1], for the backend to
    fit to the output (crop or resize) and turn into frames.
    """
    if frames.ndim != 5:
        raise ValueError(f"refine_video takes a (B, 3, F, H, W) window, got shape {tuple(frames.shape)}")
    temporal = int(backend.model_info.temporal_factor)
    latent_frames = (int(frames.shape[2]) - 1) // temporal + 1
    init = StageResult(size=(frames.shape[-1], frames.shape[-2]), pixels=frames)
    res = run_ladder(backend, stages, cond, rng, init=init, resolve=resolve, freeu=freeu, mask=mask,
                     frames=latent_frames, progress=progress)[-1]
    return backend.decode(res.latent)


def generate_images(backend: Any, stages: Sequence[ResolvedStage], cond: Any, rngs: Sequence[RandomSources], *,
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

        results = run_ladder(backend, stages, cond, rng, init=None, resolve=resolve, freeu=freeu, mask=mask,
                             keep=keep, progress=prog)
        for r in results:
            outs.extend(to_images(backend.decode(r.latent), out_size if keep == "last" else None))
    return outs


def _vae_dtype(backend: Any) -> Any:
    return backend.vae_dtype or backend.dtype or torch.float32


def video_to_pixels(frames: Sequence[Any], size: tuple[int, int], device: Any, dtype: Any) -> torch.Tensor:
    """list of (H, W, 3) float in [0, 1] -> (1, 3, F, h, w) in [-1, 1] at
    ``size`` = (w, h) (bicubic when the size differs)."""
    import torch.nn.functional as F

    arr = np.stack([np.asarray(f, dtype=np.float32)[..., :3] for f in frames])  # (F, H, W, 3)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2) * 2.0 - 1.0  # (F, 3, H, W)
    if (x.shape[-1], x.shape[-2]) != tuple(size):
        x = F.interpolate(x, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    return x.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=dtype)


def fit_frames(px: torch.Tensor, size: tuple[int, int], fit: str = "crop") -> list[np.ndarray]:
    """(1, 3, F, H, W) in [-1, 1] -> F frames (h, w, 3) float32 in [0, 1] at
    ``size`` = (w, h): "crop" scales to cover then centre-crops (1920x1088 ->
    1920x1080 drops 4 rows top and bottom), "resize" stretches."""
    import torch.nn.functional as F

    x = px[0].float().permute(1, 0, 2, 3)  # (F, 3, H, W)
    w, h = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    if (W, H) != (w, h):
        if fit == "resize":
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        else:
            s = max(w / W, h / H)
            if abs(s - 1.0) > 1e-9:
                x = F.interpolate(x, size=(max(h, round(H * s)), max(w, round(W * s))), mode="bicubic",
                                  align_corners=False)
            H2, W2 = x.shape[-2:]
            top, left = (H2 - h) // 2, (W2 - w) // 2
            x = x[..., top:top + h, left:left + w]
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    return [np.ascontiguousarray(f.permute(1, 2, 0).cpu().numpy(), dtype=np.float32) for f in x]


__all__ = ["fit_frames", "generate_images", "refine_frames", "refine_video", "to_images", "to_pixels",
           "video_to_pixels"]
