"""Gaussian kernels and blurs used by scale fusion (ALGORITHM.md section 3.5).

The reference (FreeScale ``gaussian_kernel``/``gaussian_filter``) builds a
*3-D* k x k x k Gaussian and convolves the attention output laid out as
(B, h, w, C) over (h, w, C): the blur also mixes neighbouring feature
channels, with zero padding at the ends of every axis. :func:`gaussian_blur_3d`
reproduces that; :func:`gaussian_blur_spatial` (blur over h, w only) is an
opt-in deviation.

All functions take and return tensors on the input's device and dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLUR_MODES = ("3d", "3d-separable", "spatial")


def gaussian_taps(k: int, sigma: float = 1.0, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``k``: ``exp(-(i - (k-1)/2)^2 / (2 sigma^2))``.

    Shape: (k,).

    >>> gaussian_taps(3).tolist()  # doctest: +ELLIPSIS
    [0.274..., 0.451..., 0.274...]
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {k}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    x = torch.arange(k, dtype=torch.float32)
    g = torch.exp(-((x - (k - 1) / 2) ** 2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_kernel_3d(k: int, sigma: float = 1.0, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Outer product of three :func:`gaussian_taps`. Shape: (k, k, k); sums to 1."""
    g = gaussian_taps(k, sigma)
    return (g[:, None, None] * g[None, :, None] * g[None, None, :]).to(dtype=dtype, device=device)


def blur_kernel_size(scale_h: int, scale_w: int) -> int:
    """Reference kernel size ``2 * max(s_h, s_w) - 1`` (3 at 2x, 7 at 4x, 15 at 8x)."""
    return 2 * max(int(scale_h), int(scale_w), 1) - 1


def gaussian_blur_3d(x: torch.Tensor, k: int, sigma: float = 1.0) -> torch.Tensor:
    """Reference blur: k^3 Gaussian over the last three axes, zero padding k//2.

    x: (B, h, w, C) -> (B, h, w, C). Each batch entry is blurred separately.
    """
    _check_bhwc(x)
    if k == 1:
        return x.clone()
    w = gaussian_kernel_3d(k, sigma, dtype=x.dtype, device=x.device)[None, None]
    return F.conv3d(x.unsqueeze(1), w, padding=k // 2).squeeze(1)


def gaussian_blur_3d_separable(x: torch.Tensor, k: int, sigma: float = 1.0) -> torch.Tensor:
    """Same values as :func:`gaussian_blur_3d` (up to rounding), as three 1-D
    passes: k*3 instead of k^3 multiply-adds per element. x: (B, h, w, C)."""
    _check_bhwc(x)
    if k == 1:
        return x.clone()
    out = x
    for axis in (1, 2, 3):
        out = _blur_axis(out, k, sigma, axis)
    return out


def gaussian_blur_spatial(x: torch.Tensor, k: int, sigma: float = 1.0) -> torch.Tensor:
    """Blur over (h, w) only, each feature channel on its own (a deviation
    from the reference; opt in with ``blur = "spatial"``). x: (B, h, w, C)."""
    _check_bhwc(x)
    if k == 1:
        return x.clone()
    return _blur_axis(_blur_axis(x, k, sigma, 1), k, sigma, 2)


def blur_tokens(x: torch.Tensor, k: int, sigma: float = 1.0, mode: str = "3d") -> torch.Tensor:
    """Dispatch on ``mode`` in :data:`BLUR_MODES`. x: (B, h, w, C)."""
    if mode == "3d":
        return gaussian_blur_3d(x, k, sigma)
    if mode == "3d-separable":
        return gaussian_blur_3d_separable(x, k, sigma)
    if mode == "spatial":
        return gaussian_blur_spatial(x, k, sigma)
    raise ValueError(f"blur mode {mode!r} is not one of {', '.join(BLUR_MODES)}")


def _blur_axis(x: torch.Tensor, k: int, sigma: float, axis: int) -> torch.Tensor:
    taps = gaussian_taps(k, sigma, dtype=x.dtype, device=x.device)
    moved = x.movedim(axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    out = F.conv1d(flat, taps.view(1, 1, k), padding=k // 2)
    return out.reshape(shape).movedim(-1, axis)


def _check_bhwc(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a (B, h, w, C) tensor, got shape {tuple(x.shape)}")


__all__ = ["BLUR_MODES", "blur_kernel_size", "blur_tokens", "gaussian_blur_3d", "gaussian_blur_3d_separable",
           "gaussian_blur_spatial", "gaussian_kernel_3d", "gaussian_taps"]
