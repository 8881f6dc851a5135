"""Scheduler-side pieces of the cascade (ALGORITHM.md sections 1.3, 1.4, 5):
a stage's scheduler, re-noising with the scheduler's own forward process and
the cosine skip-residual blend. Generic over latent rank and scheduler family.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from cinescale_post.contracts.stages import ResolvedStage


def stage_scheduler(backend: Any, stage: ResolvedStage) -> Any:
    """A fresh scheduler for ``stage`` with its timesteps set: the model's
    ``make_scheduler(stage)``; ``stage_sigmas(stage)``, when it returns a
    sequence, is passed to ``set_timesteps`` as explicit sigmas."""
    sched = backend.make_scheduler(stage)
    sigmas = backend.stage_sigmas(stage)
    if sigmas is None:
        sched.set_timesteps(stage.spec.steps, device=backend.device)
    else:
        sched.set_timesteps(stage.spec.steps, device=backend.device, sigmas=[float(s) for s in sigmas])
    return sched


def flow_sigmas(steps: int) -> list[float]:
    """The flow-matching sigma grid of DiffSynth-style DiTs (Wan): ``linspace(1, 0, steps + 1)[:-1]``
    in float32, unshifted (the scheduler applies its shift). diffusers' plain
    ``set_timesteps(steps)`` spaces down to 1/1000 instead; pass these from
    ``stage_sigmas`` to get the reference grid. ``flow_sigmas(4) == [1, 0.75, 0.5, 0.25]``."""
    import numpy as np

    return np.linspace(1.0, 0.0, int(steps) + 1, dtype=np.float64)[:-1].astype(np.float32).tolist()


def add_noise_at(scheduler: Any, x0: torch.Tensor, eps: torch.Tensor, t: Any) -> torch.Tensor:
    """The scheduler's forward process q(x_t | x0) at timestep ``t``.

    ``add_noise(x0, eps, t)`` (Euler: ``x0 + sigma_t eps``; UniPC flow:
    ``(1 - s) x0 + s eps``) or, for flow-matching Euler, ``scale_noise(x0, t, eps)``.
    ``t`` must be one of ``scheduler.timesteps``; the scheduler must not have
    a begin or step index set (pass a pristine copy), otherwise diffusers uses
    that index instead of ``t``. Shapes: x0, eps (B, C, [F,] H, W) -> same.
    """
    t = torch.as_tensor(t).reshape(1).to(x0.device)
    if getattr(scheduler, "begin_index", None) is not None or getattr(scheduler, "step_index", None) is not None:
        raise RuntimeError("add_noise_at needs a scheduler without begin/step index; "
                           "fix: copy.deepcopy the scheduler right after set_timesteps")
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(x0, eps, t)
    if hasattr(scheduler, "scale_noise"):
        return scheduler.scale_noise(x0, t, eps)
    raise TypeError(f"{type(scheduler).__name__} has neither add_noise nor scale_noise")


def renoise_trajectory(scheduler: Any, x0: torch.Tensor, eps: torch.Tensor,
                       timesteps: Sequence[Any]) -> list[torch.Tensor]:
    """``[add_noise_at(scheduler, x0, eps, t) for t in timesteps]`` — one noise
    tensor for the whole trajectory (reference)."""
    return [add_noise_at(scheduler, x0, eps, t) for t in timesteps]


def cosine_factor(t: Any, num_train_timesteps: int = 1000) -> torch.Tensor:
    """phi(t) = 0.5 (1 + cos(pi (T - t) / T)): ~1 at t = T, -> 0 at t = 0.
    Computed in float32 like the reference. Returns a 0-d tensor."""
    t = torch.as_tensor(t, dtype=torch.float32).cpu()
    T = float(num_train_timesteps)
    return 0.5 * (1 + torch.cos(math.pi * (T - t) / T))


def blend_weight(t: Any, scale: Any, num_train_timesteps: int = 1000) -> torch.Tensor:
    """c1 = phi(t) ** scale; ``scale`` a number or a tensor (per-pixel mask
    variant), broadcastable to the latent."""
    phi = cosine_factor(t, num_train_timesteps)
    if isinstance(scale, torch.Tensor):
        return phi.to(scale.device, scale.dtype if scale.is_floating_point() else torch.float32) ** scale
    return phi ** float(scale)


def cosine_blend(z: torch.Tensor, z_ref: torch.Tensor, t: Any, scale: Any,
                 num_train_timesteps: int = 1000) -> torch.Tensor:
    """Skip-residual pull towards the re-noised upsampled latent:
    ``(1 - c1) z + c1 z_ref`` with ``c1 = phi(t) ** scale``.

    z, z_ref: (B, C, [F,] H, W); scale: float or tensor broadcastable to z.
    """
    c1 = blend_weight(t, scale, num_train_timesteps)
    c1 = c1.to(z.device)
    return (z * (1 - c1) + z_ref * c1).to(z.dtype)


class DetailMask:
    """A detail mask with its rule: ``values`` (B or 1, 1, H, W) float;
    ``soft=False`` (reference): any non-zero value is detail (m = 1);
    ``soft=True``: the grey level, clamped to [0, 1], is the weight m."""

    def __init__(self, values: torch.Tensor, soft: bool = False) -> None:
        self.values, self.soft = values, bool(soft)

    def to(self, device: Any) -> "DetailMask":
        return DetailMask(self.values.to(device), self.soft)


def mask_exponent(mask: "torch.Tensor | DetailMask", latent_hw: tuple[int, int], fg: float,
                  bg: float) -> torch.Tensor:
    """Per-pixel exponent of the detail-control variant:
    ``m * fg + (1 - m) * bg`` with ``m = (mask != 0)`` (reference; a
    :class:`DetailMask` with ``soft`` uses the clamped grey level instead),
    nearest-resized to the latent grid. mask: (B or 1, 1, H, W) -> (B or 1, 1, h, w) float32,
    or per latent frame of a video (B or 1, 1, T, H, W) -> (B or 1, 1, T, h, w)."""
    import torch.nn.functional as F

    soft = isinstance(mask, DetailMask) and mask.soft
    if isinstance(mask, DetailMask):
        mask = mask.values
    if mask.ndim not in (4, 5) or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W) or (B, 1, T, H, W), got {tuple(mask.shape)}")
    if mask.ndim == 5:
        b, _, t = mask.shape[:3]
        flat = mask.float().permute(0, 2, 1, 3, 4).reshape(b * t, 1, *mask.shape[-2:])
        m = F.interpolate(flat, size=tuple(latent_hw), mode="nearest")
        m = m.reshape(b, t, 1, *latent_hw).permute(0, 2, 1, 3, 4)
    else:
        m = F.interpolate(mask.float(), size=tuple(latent_hw), mode="nearest")
    m = m.clamp(0.0, 1.0) if soft else (m != 0).float()
    return m * fg + (1 - m) * bg


__all__ = ["DetailMask", "add_noise_at", "blend_weight", "cosine_blend", "cosine_factor", "flow_sigmas", "mask_exponent",
           "renoise_trajectory", "stage_scheduler"]
