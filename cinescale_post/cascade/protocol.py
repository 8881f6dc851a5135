"""The diffusion-backend protocol the cascade loop drives.

A backend that wants the core cascade (stage ladder, re-noise, restart,
skip-residual blend, dilation, scale fusion) implements
:class:`DiffusionBackend`. The loop only ever talks to a backend through these
methods, so the same loop drives a UNet with 4-D latents (SDXL) and a DiT with
5-D video latents (Wan), with any diffusers scheduler.

No torch import here: values are described, not constructed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from ..interfaces import Backend


@dataclass(frozen=True)
class ModelInfo:
    """Facts from the model's config that size the ladder.

    ``base_size``: (width, height) in pixels the model was trained at (SDXL:
    ``unet.config.sample_size * vae_scale_factor`` = 1024). ``latent_factor``:
    pixels per latent cell. ``size_multiple``: stage sizes are snapped to it.
    ``temporal_factor``: frames per latent frame (1 for image models).
    """

    base_size: tuple[int, int]
    latent_factor: int = 8
    latent_channels: int = 4
    size_multiple: int = 8
    temporal_factor: int = 1


@dataclass(frozen=True)
class PatchPoints:
    """Where the method may change the denoiser, declared as data.

    ``dilate_convs``: module names of the convolutions restrained dilation
    touches. ``fusion_attention``: fnmatch patterns over attention-processor
    names that take scale fusion (self-attention only). ``freeu``: true when
    the up-blocks take FreeU (keyed on the decoder stage, ``ops.freeu``).
    ``extra``: backend-specific points (e.g. RoPE modules of a DiT).
    """

    dilate_convs: tuple[str, ...] = ()
    fusion_attention: tuple[str, ...] = ()
    freeu: bool = False
    extra: tuple[tuple[str, Any], ...] = ()


class DiffusionBackend(Backend):
    """A :class:`~cinescale_post.interfaces.Backend` the cascade can drive.

    Tensor conventions: pixels are torch (B, 3, H, W) — or (B, 3, F, H, W) for
    video — in [-1, 1], on ``self.device``; latents are already multiplied by
    the VAE scaling factor (what the denoiser sees).
    """

    device: Any = "cpu"
    dtype: Any = None

    @property
    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Sizes from the loaded model's config."""

    @property
    @abc.abstractmethod
    def patch_points(self) -> PatchPoints:
        """Patchable modules of :attr:`denoiser`."""

    @property
    @abc.abstractmethod
    def denoiser(self) -> Any:
        """The ``nn.Module`` patches are applied to (UNet / transformer)."""

    @property
    def denoisers(self) -> list:
        """Every model the stage patches go on (two-expert models list both);
        default ``[self.denoiser]``."""
        return [self.denoiser]

    @abc.abstractmethod
    def make_scheduler(self, stage: Any = None) -> Any:
        """A fresh scheduler (own state) for ``stage`` (a ``ResolvedStage``; None
        outside a ladder). Implementations may omit the argument: the loop passes
        it only when accepted."""

    def stage_sigmas(self, stage: Any) -> Any:
        """Explicit sigmas for ``stage`` (passed to ``set_timesteps(steps,
        sigmas=...)``), or None for the scheduler's own spacing (default)."""
        return None

    def stage_patches(self, stage: Any) -> Any:
        """Handles to hold for the whole of ``stage``, base stage included (an
        iterable; a generator lets the loop remove earlier handles if a later
        one fails). Default: none."""
        return ()

    @abc.abstractmethod
    def encode(self, pixels: Any, *, generator: Any = None, sample: bool = True) -> Any:
        """Pixels -> scaled latents; ``sample``: draw from the posterior with
        ``generator`` (reference) or take its mean (controlled mode)."""

    @abc.abstractmethod
    def decode(self, latents: Any) -> Any:
        """Scaled latents -> pixels in about [-1, 1] (not clamped)."""

    @abc.abstractmethod
    def condition(self, prompt: str, negative_prompt: str = "", *, size: tuple[int, int],
                  guidance: float) -> Any:
        """Prompt conditioning for stages run with ``guidance``; ``size`` is the
        base (width, height) for micro-conditioning. Opaque to the loop."""

    @abc.abstractmethod
    def predict(self, x: Any, t: Any, cond: Any, *, guidance: float) -> Any:
        """Guided model output for the scheduler (``x`` already passed
        through ``scale_model_input``)."""

    def latent_shape(self, size: tuple[int, int], batch: int = 1, frames: int = 1) -> tuple[int, ...]:
        """Latent shape for a (width, height) stage."""
        info = self.model_info
        w, h = size
        return (batch, info.latent_channels, h // info.latent_factor, w // info.latent_factor)


__all__ = ["DiffusionBackend", "ModelInfo", "PatchPoints"]
