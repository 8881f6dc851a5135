"""Pixel tensors and the images at the core's boundary, converted and resized.

Images at the boundary are (H, W, 3) float32 in [0, 1] (``contracts.media``);
model pixels are torch (B, 3, H, W) -- or (B, 3, F, H, W) for a video window --
in [-1, 1]. Sizes are (width, height). Pure functions; torch is imported here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
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


def video_to_pixels(frames: Sequence[Any], size: tuple[int, int], device: Any, dtype: Any) -> torch.Tensor:
    """list of (H, W, 3) float in [0, 1] -> (1, 3, F, h, w) in [-1, 1] at
    ``size`` = (w, h) (bicubic when the size differs)."""
    arr = np.stack([np.asarray(f, dtype=np.float32)[..., :3] for f in frames])  # (F, H, W, 3)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2) * 2.0 - 1.0  # (F, 3, H, W)
    if (x.shape[-1], x.shape[-2]) != tuple(size):
        x = F.interpolate(x, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    return x.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=dtype)


def fit_frames(px: torch.Tensor, size: tuple[int, int], fit: str = "crop") -> list[np.ndarray]:
    """(1, 3, F, H, W) in [-1, 1] -> F frames (h, w, 3) float32 in [0, 1] at
    ``size`` = (w, h): "crop" scales to cover then centre-crops (1920x1088 ->
    1920x1080 drops 4 rows top and bottom), "resize" stretches."""
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


__all__ = ["fit_frames", "resize", "to_images", "to_pixels", "video_to_pixels"]
