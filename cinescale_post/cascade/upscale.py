"""Enlarging a stage result for the next stage (ALGORITHM.md section 1.3).

Reference (FreeScale): decode -> bicubic in pixel space (``align_corners=False``,
no antialias, not clamped) -> encode (posterior sample). Options: latent
interpolation (DemoFusion bicubic, CineScale trilinear). Works on 4-D image
tensors (B, C, H, W) and 5-D video tensors (B, C, F, H, W); sizes are
(width, height) in the units of the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Spatial resize to (width, height). x: (B, C, H, W) or (B, C, F, H, W),
    each frame resized alone for 5-D unless ``mode == "trilinear"`` (which keeps F).
    Computed in float32 for half inputs; returns x's dtype."""
    w, h = int(size[0]), int(size[1])
    dtype = x.dtype
    xf = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    kw = {} if mode in ("nearest", "nearest-exact") else {"align_corners": False}
    if x.ndim == 4:
        if mode == "trilinear":
            raise ValueError("trilinear needs a 5-D (B, C, F, H, W) tensor")
        out = F.interpolate(xf, size=(h, w), mode=mode, **kw)
    elif x.ndim == 5:
        if mode == "trilinear":
            out = F.interpolate(xf, size=(x.shape[2], h, w), mode="trilinear", **kw)
        else:
            b, c, f = x.shape[:3]
            flat = xf.permute(0, 2, 1, 3, 4).reshape(b * f, c, *x.shape[3:])
            out = F.interpolate(flat, size=(h, w), mode=mode, **kw)
            out = out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
    else:
        raise ValueError(f"expected a 4-D or 5-D tensor, got shape {tuple(x.shape)}")
    return out.to(dtype)


@dataclass(frozen=True)
class TensorUpscaler:
    """A stage upscaler working on torch tensors.

    ``via_pixels=True``: the cascade decodes the previous latent, calls this on
    the pixels, and encodes the result (reference FreeScale path).
    ``via_pixels=False``: called on the latent directly (size in latent cells).
    """

    name: str
    mode: str
    via_pixels: bool
    description: str = ""
    space: str = "latent"

    def __call__(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize(x, size, self.mode)


def upscale_latent(backend: Any, prev: "StageResult", size: tuple[int, int], upscaler: Any,
                   generator: Any = None, sample: bool = True) -> torch.Tensor:
    """Enlarge ``prev`` to ``size`` (pixels, (width, height)) and return the
    scaled latent of the next stage.

    * ``upscaler.via_pixels`` (vae-bicubic): decode if needed, resize pixels,
      encode (posterior sample with ``generator``, or its mean).
    * ``upscaler.space == "pixel"`` (numpy upscalers of the draft engine):
      decode, convert each image to (H, W, 3) in [0, 1], call, encode.
    * otherwise a latent upscaler: encode if needed, resize the latent.
    """
    from cinescale_post.cascade.ladder import StageResult  # noqa: F401 - type only

    info = backend.model_info
    if getattr(upscaler, "via_pixels", False) or getattr(upscaler, "space", "latent") == "pixel":
        px = prev.pixels if prev.pixels is not None else backend.decode(prev.latent)
        if getattr(upscaler, "via_pixels", False):
            up = upscaler(px, size)
        else:
            up = _numpy_upscale(upscaler, px, size)
        return backend.encode(up, generator=generator, sample=sample)
    lat = prev.latent if prev.latent is not None else backend.encode(prev.pixels, generator=generator,
                                                                      sample=sample)
    return upscaler(lat, (size[0] // info.latent_factor, size[1] // info.latent_factor))


def _numpy_upscale(upscaler: Any, px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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


__all__ = ["TensorUpscaler", "resize", "upscale_latent"]
