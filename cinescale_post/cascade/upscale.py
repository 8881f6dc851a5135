"""Enlarging a stage result for the next stage (ALGORITHM.md section 1.3).

Reference (FreeScale): decode -> bicubic in pixel space (``align_corners=False``,
no antialias, not clamped) -> encode (posterior sample). Options: latent
interpolation (DemoFusion bicubic, CineScale trilinear). Works on 4-D image
tensors (B, C, H, W) and 5-D video tensors (B, C, F, H, W); sizes are
(width, height) in the units of the tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from cinescale_post.cascade.sources import StageResult
from cinescale_post.contracts.engine import Upscaler


def upscale_latent(model: Any, prev: StageResult, size: tuple[int, int], upscaler: Upscaler,
                   generator: Any = None, sample: bool = True) -> torch.Tensor:
    """Enlarge ``prev`` to ``size`` (pixels, (width, height)) and return the
    scaled latent of the next stage.

    * ``upscaler.via_pixels`` (vae-bicubic): decode if needed, resize pixels,
      encode (posterior sample with ``generator``, or its mean).
    * ``upscaler.space == "pixel"`` (numpy upscalers of the draft engine):
      decode, convert each image to (H, W, 3) in [0, 1], call, encode.
    * otherwise a latent upscaler: encode if needed, resize the latent.
    """
    info = model.model_info
    if upscaler.via_pixels or upscaler.space == "pixel":
        px = prev.pixels if prev.pixels is not None else model.decode(prev.latent)
        up = upscaler(px, size) if upscaler.via_pixels else _numpy_upscale(upscaler, px, size)
        return model.encode(up, generator=generator, sample=sample)
    lat = prev.latent if prev.latent is not None else model.encode(prev.pixels, generator=generator,
                                                                    sample=sample)
    return upscaler(lat, (size[0] // info.latent_factor, size[1] // info.latent_factor))


def _numpy_upscale(upscaler: Upscaler, px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    import numpy as np

    if px.ndim != 4:
        raise ValueError(f"pixel upscaler {upscaler.name!r} takes images, got shape {tuple(px.shape)}")
    outs = []
    for img in px:
        arr = ((img.float().permute(1, 2, 0).cpu().numpy() + 1.0) / 2.0).astype(np.float32)
        res = np.asarray(upscaler(arr, (int(size[0]), int(size[1]))), dtype=np.float32)
        if res.shape[:2] != (size[1], size[0]):
            raise ValueError(f"upscaler {upscaler.name!r} returned {res.shape}, expected {(size[1], size[0], 3)}")
        outs.append(torch.from_numpy(res).permute(2, 0, 1) * 2.0 - 1.0)
    return torch.stack(outs).to(device=px.device, dtype=px.dtype)


__all__ = ["upscale_latent"]
