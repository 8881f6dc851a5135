"""The reference flow-matching schedule (ALGORITHM.md 4.4).

DiffSynth's ``FlowMatchScheduler(shift=s, sigma_min=0, extra_one_step=True)``
uses ``sigma_j = linspace(1, 0, N + 1)[:-1]`` warped by
``s * sigma / (1 + (s - 1) * sigma)``, timestep ``1000 * sigma``, Euler steps
down to sigma_N = 0. diffusers' ``FlowMatchEulerDiscreteScheduler`` reproduces it
only when those sigmas are passed explicitly (a plain ``set_timesteps(N)``
spaces down to 1/1000 instead; sigmas differ by up to 0.078). Inside the
cascade the backend passes them per stage (``stage_sigmas``, from the core's
``flow_sigmas``); :class:`ReferenceFlowScheduler` is for use outside it (a
pipeline's own scheduler, benchmarks).
"""

from __future__ import annotations

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler

from cinescale_post.api import flow_sigmas


def reference_sigmas(steps: int) -> np.ndarray:
    """Unshifted sigmas of the reference: ``linspace(1, 0, steps + 1)[:-1]`` (float32)."""
    return np.asarray(flow_sigmas(steps), dtype=np.float32)


def shifted(sigma, shift: float):
    """``s * sigma / (1 + (s - 1) * sigma)`` (the noise-shifting warp)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


class ReferenceFlowScheduler(FlowMatchEulerDiscreteScheduler):
    """``set_timesteps(N)`` uses the reference's (N+1)-grid sigmas; explicit
    ``sigmas=``/``timesteps=`` are passed through unchanged."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        if sigmas is None and timesteps is None and num_inference_steps is not None:
            sigmas = flow_sigmas(num_inference_steps)
        return super().set_timesteps(num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu,
                                     timesteps=timesteps)


def make_flow_scheduler(shift: float, *, sigmas: str = "reference", num_train_timesteps: int = 1000):
    """A fresh flow-matching Euler scheduler with ``shift``; ``sigmas`` "reference"
    (``set_timesteps(N)`` uses the (N+1)-grid) or "diffusers" (plain spacing)."""
    cls = ReferenceFlowScheduler if sigmas == "reference" else FlowMatchEulerDiscreteScheduler
    return cls(num_train_timesteps=num_train_timesteps, shift=float(shift))


def with_shift(scheduler, shift: float):
    """A copy of the model's own scheduler with its flow shift replaced
    (``flow_shift`` for UniPC/DPM flow schedulers, ``shift`` for FlowMatch)."""
    cfg = dict(scheduler.config)
    if "flow_shift" in cfg:
        cfg["flow_shift"] = float(shift)
    if "shift" in cfg:
        cfg["shift"] = float(shift)
    return type(scheduler).from_config(cfg)


__all__ = ["ReferenceFlowScheduler", "make_flow_scheduler", "reference_sigmas", "shifted", "with_shift"]
