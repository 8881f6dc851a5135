"""Entry point ``example`` of group ``cinescale_post``: a Stable Diffusion
1.5-style model adapter. Copy this module to start a backend for another
model family.

Everything a model plugin needs is here, and it imports ``cinescale_post.api``
only:

* two hook implementations, ``register_backends`` and ``register_presets``;
* :class:`ExampleOptions`, the adapter's own ``[backend_options]`` declared
  as a dataclass (the core assigns each key to the driver or to it, refuses
  the rest, and calls ``from_dict`` at plan time, without torch);
* :class:`ExampleAdapter`, a :class:`~cinescale_post.api.ModelAdapter`: its
  capabilities as declared data; ``load``, which reads a local diffusers
  folder (safetensors only, never a download) and returns a fresh
  :class:`ExampleModel`; ``memory_profile`` from the folder's configs (memory
  planning and ``--dry-run`` estimates without loading weights); and
  ``tiny_model``, a random-weight model for ``cinescale doctor --smoke``.
  Each receives a typed :class:`~cinescale_post.api.ModelPlan`;
* :class:`ExampleModel`, a :class:`~cinescale_post.api.Model`: the model's
  own work — ``encode``, ``decode``, ``condition``, one guided ``predict``,
  ``make_scheduler`` and ``patch_points`` naming where the core may apply
  restrained dilation and scale fusion.

The core's render driver does everything else: stage ladder, noise policy,
temporal post-ops, memory back-off. The module imports no torch or diffusers
at import time (the host imports it to list plugins).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cinescale_post.api import (AdapterOptions, Capabilities, MemoryProfile, MemoryStage, Model, ModelAdapter,
                                ModelInfo, ModelPlan, PatchPoints, PlanError, WeightsError, hookimpl, loader_errors,
                                packaged)

SCHEDULERS = ("ddim", "euler")
# Self-attention of every BasicTransformerBlock (cross-attention is attn2).
SELF_ATTENTION = ("*transformer_blocks.*.attn1.processor",)


def dilated_convs(n_blocks: int, layers_per_block: int) -> tuple[str, ...]:
    """FreeScale's restrained choice carried over to any diffusers UNet: the
    downsampler into the deepest down block, that block's resnets and the mid
    block's resnets; never the up blocks. For SDXL (3 blocks) these are the
    nine convolutions FreeScale dilates; for SD 1.5 (4 blocks) the same
    places one level deeper. Not tuned on real SD 1.5 checkpoints.

    >>> len(dilated_convs(3, 2)), dilated_convs(4, 2)[:2]
    (9, ('down_blocks.2.downsamplers.0.conv', 'down_blocks.3.resnets.0.conv1'))
    """
    last = n_blocks - 1
    names = [f"down_blocks.{last - 1}.downsamplers.0.conv"] if n_blocks > 1 else []
    names += [f"down_blocks.{last}.resnets.{i}.conv{k}" for i in range(layers_per_block) for k in (1, 2)]
    names += [f"mid_block.resnets.{i}.conv{k}" for i in range(2) for k in (1, 2)]
    return tuple(names)


def _check(x: Any, what: str, layout: str, channels: int) -> None:
    """Refuse tensors the model would misread, naming the expected layout."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{what} must be {layout} with {channels} channels, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")


@dataclass
class ExampleCond:
    """CLIP hidden states (negative then positive when ``cfg``), (2 or 1, 77, D)."""

    embeds: Any
    cfg: bool


class ExampleModel(Model):
    """The loaded components of one render."""

    id = "example-sd15"

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler, *, device, dtype):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler, self.device, self.dtype = scheduler, device, dtype
        self.vae_dtype = vae.dtype

    @property
    def model_info(self) -> ModelInfo:
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        base = int(self.unet.config.sample_size) * f  # 64 * 8 = 512 for SD 1.5
        return ModelInfo(base_size=(base, base), latent_factor=f, latent_channels=int(self.unet.config.in_channels),
                         size_multiple=f)

    @property
    def patch_points(self) -> PatchPoints:
        cfg = self.unet.config
        return PatchPoints(dilate_convs=dilated_convs(len(cfg.block_out_channels), int(cfg.layers_per_block)),
                           fusion_attention=SELF_ATTENTION)

    @property
    def denoiser(self):
        return self.unet

    def make_scheduler(self, stage=None):
        return copy.deepcopy(self.scheduler)

    def encode(self, pixels, *, generator=None, sample=True):
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, 4, H/8, W/8) in ``self.dtype``."""
        import torch

        _check(pixels, "pixels", "(B, 3, H, W)", 3)
        with torch.no_grad():
            dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        return (z * self.vae.config.scaling_factor).to(self.dtype)

    def decode(self, latents):
        """Scaled latents (B, 4, h, w) -> pixels (B, 3, 8h, 8w) in about [-1, 1], float32."""
        import torch

        _check(latents, "latents", "(B, C, h, w)", int(self.vae.config.latent_channels))
        with torch.no_grad():
            z = latents.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor
            return self.vae.decode(z, return_dict=False)[0]

    def condition(self, prompt, negative_prompt="", *, size, guidance, image=None):
        import torch

        cfg = guidance > 1.0
        texts = [negative_prompt or "", prompt or ""] if cfg else [prompt or ""]
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            embeds = self.text_encoder(ids.to(self.device))[0]
        return ExampleCond(embeds.to(self.device, self.dtype), cfg)

    def predict(self, x, t, cond: ExampleCond, *, guidance):
        """Guided noise prediction for latents ``x`` (B, 4, h, w)."""
        import torch

        _check(x, "latents", "(B, C, h, w)", int(self.unet.config.in_channels))
        b = x.shape[0]
        use_cfg = cond.cfg and guidance > 1.0
        pos = cond.embeds[-1:].expand(b, -1, -1)
        ctx = torch.cat([cond.embeds[:1].expand(b, -1, -1), pos]) if use_cfg else pos
        with torch.no_grad():
            out = self.unet(torch.cat([x, x]) if use_cfg else x, t, encoder_hidden_states=ctx, return_dict=False)[0]
        if use_cfg:
            uncond, text = out.chunk(2)
            out = uncond + guidance * (text - uncond)
        return out

    def unload(self) -> None:
        self.unet = self.vae = self.text_encoder = None


@dataclass(frozen=True)
class ExampleOptions(AdapterOptions):
    """The template's own ``[backend_options]``: ``scheduler`` "ddim"
    (default) or "euler" (the driver's keys are documented in docs/plugins.md)."""

    scheduler: str = "ddim"

    @classmethod
    def from_dict(cls, d) -> "ExampleOptions":
        v = dict(d)
        if v.get("scheduler", "ddim") not in SCHEDULERS:
            raise PlanError(f"backend_options.scheduler = {v['scheduler']!r}",
                            fix=f"use one of: {', '.join(SCHEDULERS)}")
        return cls(**v)


class ExampleAdapter(ModelAdapter):
    id = "example-sd15"
    description = "template backend: Stable Diffusion 1.5-style UNet (self-cascade, dilation, scale fusion)"
    # Frames are refined one by one with per-frame seeds, no low-frequency anchoring.
    capabilities = Capabilities(tasks=frozenset({"v2v", "t2i"}), family="unet", latent_layout="image",
                                noise=("frame", "shot", "flow"), option_defaults={"anchor_lowfreq": 0.0})
    options_type = ExampleOptions

    def weight_files(self, plan: ModelPlan) -> list[str]:
        return sorted(str(f) for f in Path(plan.model).rglob("*.safetensors")) if plan.model else []

    def load(self, plan: ModelPlan) -> ExampleModel:
        """Load the folder ``plan.model`` (diffusers layout: unet/, vae/,
        text_encoder/, tokenizer/, scheduler/) for ``plan.device``/``plan.dtype``."""
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = str(model_folder(plan.model))
        safe = dict(local_files_only=True, use_safetensors=True)  # never unpickle, never download
        scheduler_cls = DDIMScheduler if plan.options.scheduler == "ddim" else EulerDiscreteScheduler
        device, dtype = torch.device(plan.device), getattr(torch, plan.dtype)
        with loader_errors(self.id, folder, "give a diffusers SD 1.5 folder whose weights are .safetensors"):
            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype, **safe)
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=torch.float32, **safe)
            text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **safe)
            tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
            scheduler = scheduler_cls.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
        for model in (unet, vae, text_encoder):
            model.to(device)
        return ExampleModel(unet, vae, text_encoder, tokenizer, scheduler, device=device, dtype=dtype)

    def load_key(self, plan: ModelPlan):
        """Plans with equal keys share one loaded model (a Ray worker over
        several shots): ``load`` reads only these."""
        return plan.weights_key()

    def memory_profile(self, plan: ModelPlan) -> MemoryProfile | str:
        """Weights and per-stage UNet/VAE demand from the folder's configs, no
        weights loaded (the core picks the settings that fit and ``--dry-run``
        shows them). The VAE runs in float32 and is not tiled."""
        from cinescale_post.api import memory as mm

        folder = Path(plan.model or "")
        if not (folder / "unet" / "config.json").is_file() or not (folder / "vae" / "config.json").is_file():
            return f"no diffusers configs at {str(folder) or '(no model)'}"
        unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
        vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
        elem, f = mm.dtype_bytes(plan.dtype), 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        comps = [c for c in (mm.component_from_folder("unet", folder / "unet", plan.dtype),
                             mm.component_from_folder("vae", folder / "vae", "float32"),
                             mm.component_from_folder("text_encoder", folder / "text_encoder", "float32"))
                 if c is not None]
        cross = plan.driver_options.get("cross_frame", False)

        def stage(size, st):
            w, h = size
            batch = (2 if st.spec.guidance > 1.0 else 1) * (2 if cross else 1)
            lat = (h // f, w // f)
            return MemoryStage(lambda window: mm.unet_activation_bytes(unet_cfg, lat, batch, elem),
                               lambda tile, window: mm.vae_bytes((w, h), list(vae_cfg["block_out_channels"]), 4,
                                                                 latent_factor=f),
                               {"latent": [lat[1], lat[0]], "unet_batch": batch})

        base = int(unet_cfg["sample_size"]) * f
        return MemoryProfile(comps, (base, base), f, stage, denoisers=("unet",),
                             facts={"vae_dtype": "float32", "note": "frames are refined one by one"})

    def tiny_model(self, device: str = "cpu") -> dict:
        """A random-weight model of this layout for ``doctor --smoke`` (it
        proves wiring, not pictures)."""
        import torch

        from cinescale_post.testing.tiny import build_tiny_sd15

        c = build_tiny_sd15(0)
        model = ExampleModel(c["unet"], c["vae"], c["text_encoder"], c["tokenizer"], c["scheduler"],
                             device=torch.device(device), dtype=torch.float32)
        for m in (model.unet, model.vae, model.text_encoder):
            m.to(device)
        return {"model": model, "size": (64, 64), "prompt": "a photo of the cat",
                "stages": [{"scale": 1, "steps": 3}, {"scale": 2, "steps": 3, "restart_step": 1, "dilate_tau": 2}]}


def model_folder(model: str | None) -> Path:
    """The local diffusers folder named by ``--model`` (checked, never downloaded)."""
    if not model:
        raise WeightsError("backend 'example-sd15' needs model weights",
                           fix="pass --model PATH (a local diffusers Stable Diffusion 1.5 folder)")
    p = Path(model).expanduser()
    if not (p / "model_index.json").is_file():
        raise WeightsError(f"{p} is not a diffusers pipeline folder (no model_index.json)",
                           fix="point --model at the folder holding model_index.json, unet/, vae/, text_encoder/ "
                               "and tokenizer/ (single checkpoint files are not loaded; nothing is downloaded)")
    return p


# ------------------------------------------------------------------ hooks


@hookimpl
def register_backends(register):
    register(ExampleAdapter())


@hookimpl
def register_presets(register):
    for preset in packaged("cinescale_example"):
        register(preset)
