"""FreeU as FreeScale applies it (FreeU v1; ALGORITHM.md section 3.8), as
removable torch pre-hooks on the up-block resnets.

Before each up-block resnet, the incoming hidden state ``h`` and the skip
feature ``s`` are concatenated. FreeU changes them first, keyed on the
**decoder stage** that produced ``h``:

* ``h`` from stage 0: ``h[:, :C/2] *= b1`` and ``s = fourier_filter(s, threshold, s1)``;
* ``h`` from stage 1: ``h[:, :C/2] *= b2`` and ``s = fourier_filter(s, threshold, s2)``;
* later stages: unchanged.

Which inputs get a factor: by default the reference's rule, keyed on the
hidden's channel count (1280 -> b1/s1, 640 -> b2/s2, :data:`REFERENCE_CHANNELS`;
a no-op on decoders of other widths, as in the reference). With ``channels =
None`` it keys on the **decoder stage** instead: a run of consecutive up-blocks
with the same output width (FreeU's "stage"; the mid block feeds stage 0). On
SDXL (up widths 1280, 640, 320) both rules give the same inputs the same
factors; the stage rule also fires on decoders of other widths (SD 1.5-style
layouts whose last two widths repeat, tiny test UNets), one factor per input.

This differs from diffusers' ``enable_freeu`` (keyed on the block index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cinescale_post.ops.handles import Handle, torch_hooks


#: The reference's rule (FreeScale's ``free_lunch_utils``): b1/s1 where the hidden has 1280
#: channels, b2/s2 where it has 640, nothing elsewhere.
REFERENCE_CHANNELS = (1280, 640)


@dataclass(frozen=True)
class FreeUSpec:
    """FreeScale defaults: b1=1.1, b2=1.2, s1=0.6, s2=0.4.

    ``channels``: the hidden channel counts b1/s1 and b2/s2 apply at
    (default: the reference's 1280 and 640, so FreeU is a no-op on decoders
    of other widths, as in the reference); None keys on the decoder stage
    instead (module docstring: stage 0 and 1 of any width, e.g. SD 1.5-style
    or tiny test UNets).
    """

    b1: float = 1.1
    b2: float = 1.2
    s1: float = 0.6
    s2: float = 0.4
    channels: tuple[int, int] | None = REFERENCE_CHANNELS
    threshold: int = 1

    def __post_init__(self):
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if len(self.channels) != 2 or min(self.channels) < 2:
                raise ValueError(f"FreeU channels must be two counts >= 2, got {self.channels}")
            if self.channels[0] == self.channels[1]:
                raise ValueError(f"FreeU channels {self.channels} repeat, so b1 and b2 would hit the same inputs; "
                                 "leave channels out to key on the decoder stage")
        if self.threshold < 1:
            raise ValueError(f"FreeU threshold must be >= 1, got {self.threshold}")

    def factors(self, stage: int | None) -> tuple[float, float] | None:
        """``(b, s)`` for hidden features of decoder ``stage`` (0 or 1), else None."""
        return {0: (self.b1, self.s1), 1: (self.b2, self.s2)}.get(stage)  # type: ignore[arg-type]


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


def freeu_pair(hidden: torch.Tensor, skip: torch.Tensor, spec: FreeUSpec,
               stage: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The FreeU v1 rule on one (hidden, skip) pair, each (B, C, H, W), for
    hidden features of decoder ``stage`` (None: find it from ``spec.channels``).
    At most one factor pair is applied. Returns new tensors (inputs unchanged)."""
    c = hidden.shape[1]
    if stage is None:
        stage = spec.channels.index(c) if (spec.channels is not None and c in spec.channels) else None
    fs = spec.factors(stage)
    if fs is None:
        return hidden, skip
    b, s = fs
    half = c // 2
    return torch.cat([hidden[:, :half] * b, hidden[:, half:]], dim=1), fourier_filter(skip, spec.threshold, s)


def up_block_split(unet: Any) -> dict[str, int]:
    """``{resnet module name: hidden channels}`` for every up-block resnet of a
    diffusers ``UNet2DConditionModel``: the resnet input is
    ``cat([hidden, skip])`` and the split point is the hidden channel count."""
    return {name: c for name, (c, _) in up_block_stages(unet).items()}


def up_block_stages(unet: Any) -> dict[str, tuple[int, int]]:
    """``{resnet module name: (hidden channels, decoder stage of the hidden)}``
    for every up-block resnet of a diffusers ``UNet2DConditionModel``.

    The hidden entering a resnet is the output of the previous resnet (the
    mid block's for ``up_blocks.0.resnets.0``); its stage is that producer's:
    up-blocks are numbered in runs of equal output width, the mid block counts
    as stage 0. SDXL (1280, 640, 320): up_blocks.1.resnets.0 sees stage-0
    features, up_blocks.2.resnets.0 stage-1 features.
    """
    if unet.mid_block is None:
        raise TypeError("FreeU needs a UNet with a mid block")
    prev_c = unet.mid_block.resnets[-1].out_channels
    prev_stage = 0
    stage, width = 0, None
    out = {}
    for i, block in enumerate(unet.up_blocks):
        w = block.resnets[-1].out_channels
        if width is not None and w != width:
            stage += 1
        width = w
        for j, res in enumerate(block.resnets):
            out[f"up_blocks.{i}.resnets.{j}"] = (prev_c, prev_stage)
            prev_c, prev_stage = res.out_channels, stage
    return out


def apply_freeu(unet: Any, spec: FreeUSpec) -> Handle:
    """Register FreeU pre-hooks on the up-block resnets of ``unet`` whose
    hidden input gets a factor. Returns a removable handle (also a context manager)."""
    modules = dict(unet.named_modules())
    hooks = []
    for name, (c_hidden, stage) in up_block_stages(unet).items():
        key = None if spec.channels is not None else stage
        if spec.channels is not None and c_hidden not in spec.channels:
            continue
        if spec.channels is None and spec.factors(stage) is None:
            continue

        def hook(module, args, kwargs, _c=c_hidden, _k=key):
            x = args[0]
            h, s = freeu_pair(x[:, :_c], x[:, _c:], spec, _k)
            return (torch.cat([h, s], dim=1),) + tuple(args[1:]), kwargs

        hooks.append(modules[name].register_forward_pre_hook(hook, with_kwargs=True))
    return torch_hooks(hooks, f"FreeU b=({spec.b1},{spec.b2}) s=({spec.s1},{spec.s2}) on {len(hooks)} resnets")


__all__ = ["REFERENCE_CHANNELS", "FreeUSpec", "apply_freeu", "fourier_filter", "freeu_pair", "up_block_split", "up_block_stages"]
