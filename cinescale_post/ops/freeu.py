"""FreeU as FreeScale applies it (FreeU v1, keyed on channel counts;
ALGORITHM.md section 3.8), as removable torch pre-hooks on the up-block resnets.

Before each up-block resnet, the incoming hidden state ``h`` and the skip
feature ``s`` are concatenated. FreeU changes them first:

* if ``h`` has ``channels[0]`` channels (1280 for SDXL): ``h[:, :C/2] *= b1``
  and ``s = fourier_filter(s, threshold, s1)``;
* then, if ``h`` has ``channels[1]`` channels (640): ``h[:, :C/2] *= b2`` and
  ``s = fourier_filter(s, threshold, s2)``.

This differs from diffusers' ``enable_freeu`` (keyed on the block index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .handles import Handle, torch_hooks


@dataclass(frozen=True)
class FreeUSpec:
    """FreeScale defaults: b1=1.1, b2=1.2, s1=0.6, s2=0.4, channels (1280, 640)."""

    b1: float = 1.1
    b2: float = 1.2
    s1: float = 0.6
    s2: float = 0.4
    channels: tuple[int, int] = (1280, 640)
    threshold: int = 1

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 2 or min(self.channels) < 2:
            raise ValueError(f"FreeU channels must be two counts >= 2, got {self.channels}")
        if self.threshold < 1:
            raise ValueError(f"FreeU threshold must be >= 1, got {self.threshold}")


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """Scale the centred ``2*threshold`` square of the 2-D spectrum by ``scale``.

    x: (B, C, H, W) any float dtype -> same shape and dtype (computed in float32).
    """
    dtype = x.dtype
    xf = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = xf.shape[-2:]
    ch, cw = h // 2, w // 2
    mask = torch.ones(xf.shape[-2:], dtype=torch.float32, device=x.device)
    mask[max(0, ch - threshold):ch + threshold, max(0, cw - threshold):cw + threshold] = scale
    xf = torch.fft.ifftshift(xf * mask, dim=(-2, -1))
    return torch.fft.ifftn(xf, dim=(-2, -1)).real.to(dtype)


def freeu_pair(hidden: torch.Tensor, skip: torch.Tensor, spec: FreeUSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The FreeU v1 rule on one (hidden, skip) pair, each (B, C, H, W).
    Returns new tensors (inputs are not modified)."""
    c = hidden.shape[1]
    for key, b, s in ((spec.channels[0], spec.b1, spec.s1), (spec.channels[1], spec.b2, spec.s2)):
        if c == key:
            half = c // 2
            hidden = torch.cat([hidden[:, :half] * b, hidden[:, half:]], dim=1)
            skip = fourier_filter(skip, spec.threshold, s)
    return hidden, skip


def up_block_split(unet: Any) -> dict[str, int]:
    """``{resnet module name: hidden channels}`` for every up-block resnet of a
    diffusers ``UNet2DConditionModel``: the resnet input is
    ``cat([hidden, skip])`` and the split point is the hidden channel count."""
    prev = unet.mid_block.resnets[-1].out_channels if unet.mid_block is not None else None
    if prev is None:
        raise TypeError("FreeU needs a UNet with a mid block")
    split = {}
    for i, block in enumerate(unet.up_blocks):
        for j, res in enumerate(block.resnets):
            split[f"up_blocks.{i}.resnets.{j}"] = prev
            prev = res.out_channels
    return split


def apply_freeu(unet: Any, spec: FreeUSpec) -> Handle:
    """Register FreeU pre-hooks on every up-block resnet of ``unet``.
    Returns a removable handle (also a context manager)."""
    modules = dict(unet.named_modules())
    hooks = []
    for name, c_hidden in up_block_split(unet).items():
        res = modules[name]
        if c_hidden not in spec.channels:
            continue

        def hook(module, args, kwargs, _c=c_hidden):
            x = args[0]
            h, s = freeu_pair(x[:, :_c], x[:, _c:], spec)
            return (torch.cat([h, s], dim=1),) + tuple(args[1:]), kwargs

        hooks.append(res.register_forward_pre_hook(hook, with_kwargs=True))
    return torch_hooks(hooks, f"FreeU b=({spec.b1},{spec.b2}) s=({spec.s1},{spec.s2}) on {len(hooks)} resnets")


__all__ = ["FreeUSpec", "apply_freeu", "fourier_filter", "freeu_pair", "up_block_split"]
