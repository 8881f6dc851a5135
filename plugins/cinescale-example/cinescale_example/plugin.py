"""Entry point ``example`` of group ``cinescale_post``: a Stable Diffusion
1.5-style backend driven by the core cascade. Copy this module to start a
backend for another model family.

Everything a backend distribution needs is here:

* two hook implementations, ``register_backends`` and ``register_presets``;
* :class:`ExampleBackend`, a :class:`~cinescale_post.cascade.DiffusionBackend`:
  ``validate`` at plan time (no torch), ``load`` from a local diffusers folder
  (safetensors only, never a download), the protocol methods the core's
  cascade calls (``encode``, ``decode``, ``condition``, ``predict``,
  ``make_scheduler``), ``patch_points`` naming where the core may apply
  restrained dilation and scale fusion, and ``render`` / ``generate``, which
  hand frames to :mod:`cinescale_post.cascade.run`.

The module imports no torch or diffusers at import time (the host imports it
to list plugins); the heavy imports live inside the methods.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cinescale_post import hookimpl
from cinescale_post.presets import packaged
from cinescale_post.cascade.protocol import DiffusionBackend, ModelInfo, PatchPoints
from cinescale_post.cascade.stages import parse_stages, resolve_ladder
from cinescale_post.errors import PlanError, WeightsError
from cinescale_post.interfaces import FrameRule, WindowJob

PRESETS = ("example-sd15-hd-refine", "example-sd15-1k-still")
SCHEDULERS = ("ddim", "euler")
DTYPES = ("float32", "float16", "bfloat16")
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
    """Text conditioning: CLIP hidden states (negative then positive when
    ``cfg``), shape (2 or 1, 77, cross_attention_dim)."""

    embeds: Any
    cfg: bool


class ExampleBackend(DiffusionBackend):
    id = "example-sd15"
    family = "unet"
    capabilities = frozenset({"v2v", "t2i"})
    frame_rule = FrameRule()  # images: any window length; frames are independent
    temporal = False
    description = "template backend: Stable Diffusion 1.5-style UNet (self-cascade, dilation, scale fusion)"

    def __init__(self) -> None:
        self.plan: Any = None
        self.unet = self.vae = self.text_encoder = self.tokenizer = self.scheduler = None
        self.device: Any = "cpu"
        self.dtype: Any = None

    # ------------------------------------------------------------ plan time (no torch)

    def validate(self, *, stages, options, size, source):
        unknown = sorted(set(options) - {"scheduler"})
        if unknown:
            raise PlanError(f"backend_options: unknown key(s) {', '.join(unknown)} for backend {self.id!r}",
                            fix="allowed: scheduler")
        scheduler = options.get("scheduler", "ddim")
        if scheduler not in SCHEDULERS:
            raise PlanError(f"backend_options.scheduler = {scheduler!r}", fix=f"use one of: {', '.join(SCHEDULERS)}")
        return tuple(s.to_dict() for s in parse_stages(stages)), {"scheduler": scheduler}

    def weight_files(self, plan) -> list[str]:
        return sorted(str(f) for f in Path(plan.model).rglob("*.safetensors")) if plan.model else []

    # ------------------------------------------------------------ loading

    def load(self, plan) -> None:
        """Load the folder ``plan.model`` (diffusers layout: unet/, vae/,
        text_encoder/, tokenizer/, scheduler/) for ``plan.device``/``plan.dtype``."""
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        if plan.dtype not in DTYPES:
            raise PlanError(f"dtype {plan.dtype!r}", fix=f"use one of: {', '.join(DTYPES)}")
        folder = str(model_folder(plan.model))
        safe = dict(local_files_only=True, use_safetensors=True)  # never unpickle, never download
        scheduler_cls = DDIMScheduler if plan.backend_options["scheduler"] == "ddim" else EulerDiscreteScheduler
        device, dtype = torch.device(plan.device), getattr(torch, plan.dtype)
        try:
            self.unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype, **safe)
            self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=torch.float32, **safe)
            self.text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **safe)
            self.tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
            self.scheduler = scheduler_cls.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
        except Exception as exc:  # every loader failure is a weights problem for the user
            raise WeightsError(f"cannot load {self.id} weights from {folder}: {type(exc).__name__}: {exc}",
                               fix="give a diffusers SD 1.5 folder whose weights are .safetensors") from exc
        for model in (self.unet, self.vae, self.text_encoder):
            model.to(device)
        self.plan, self.device, self.dtype = plan, device, dtype

    def unload(self) -> None:
        self.unet = self.vae = self.text_encoder = self.tokenizer = self.scheduler = None

    def _need(self):
        if self.unet is None:
            raise RuntimeError(f"the {self.id} backend is not loaded; call load(plan) first")
        return self.unet

    # ------------------------------------------------------------ the protocol the cascade drives

    @property
    def model_info(self) -> ModelInfo:
        unet = self._need()
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        base = int(unet.config.sample_size) * f  # 64 * 8 = 512 for SD 1.5
        return ModelInfo(base_size=(base, base), latent_factor=f, latent_channels=int(unet.config.in_channels),
                         size_multiple=f)

    @property
    def patch_points(self) -> PatchPoints:
        cfg = self._need().config
        return PatchPoints(dilate_convs=dilated_convs(len(cfg.block_out_channels), int(cfg.layers_per_block)),
                           fusion_attention=SELF_ATTENTION)

    @property
    def denoiser(self):
        return self._need()

    def make_scheduler(self):
        self._need()
        return copy.deepcopy(self.scheduler)

    def encode(self, pixels, *, generator=None, sample=True):
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, 4, H/8, W/8) in ``self.dtype``."""
        import torch

        self._need()
        _check(pixels, "pixels", "(B, 3, H, W)", 3)
        with torch.no_grad():
            dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        return (z * self.vae.config.scaling_factor).to(self.dtype)

    def decode(self, latents):
        """Scaled latents (B, 4, h, w) -> pixels (B, 3, 8h, 8w) in about [-1, 1], float32."""
        import torch

        self._need()
        _check(latents, "latents", "(B, C, h, w)", int(self.vae.config.latent_channels))
        with torch.no_grad():
            z = latents.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor
            return self.vae.decode(z, return_dict=False)[0]

    def condition(self, prompt, negative_prompt="", *, size, guidance):
        import torch

        self._need()
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

        unet = self._need()
        _check(x, "latents", "(B, C, h, w)", int(unet.config.in_channels))
        b = x.shape[0]
        use_cfg = cond.cfg and guidance > 1.0
        pos = cond.embeds[-1:].expand(b, -1, -1)
        ctx = torch.cat([cond.embeds[:1].expand(b, -1, -1), pos]) if use_cfg else pos
        with torch.no_grad():
            out = unet(torch.cat([x, x]) if use_cfg else x, t, encoder_hidden_states=ctx, return_dict=False)[0]
        if use_cfg:
            uncond, text = out.chunk(2)
            out = uncond + guidance * (text - uncond)
        return out

    # ------------------------------------------------------------ running (the core does the work)

    def _stages(self, mode: str, output: tuple[int, int]):
        info = self.model_info
        return resolve_ladder(parse_stages(list(self.plan.stages)), mode=mode, base_size=info.base_size,
                              output=output, multiple=info.size_multiple)

    def render(self, job: WindowJob):
        """Refine each frame: the source frame is the base stage; every
        preset stage enlarges, re-noises and re-denoises it. One seed per
        frame number, so re-rendering a sub-range gives the same pixels."""
        import torch

        from cinescale_post.cascade.loop import RandomSources
        from cinescale_post.cascade.run import refine_frames

        self._need()
        if not job.frames:
            return []
        stages = self._stages("render", tuple(job.size))
        plan = self.plan
        cond = self.condition(plan.prompt, plan.negative_prompt, size=tuple(job.size),
                              guidance=max(s.spec.guidance for s in stages))

        def rng_for(i: int) -> RandomSources:
            return RandomSources.from_seed(job.seed_for(job.frames[i].number))

        with torch.inference_mode():
            return refine_frames(self, [f.rgb for f in job.frames], stages, cond, rng_for,
                                 out_size=tuple(job.size), progress=job.progress)

    def generate(self, plan, seed_for) -> list:
        """Text to image through the stage ladder; one (H, W, 3) float32 image
        per frame number of the plan."""
        import torch

        from cinescale_post.cascade.loop import RandomSources
        from cinescale_post.cascade.run import generate_images

        if self.unet is None or self.plan is not plan:
            self.load(plan)
        out = (plan.output.width, plan.output.height)
        stages = self._stages("generate", out)
        cond = self.condition(plan.prompt, plan.negative_prompt, size=stages[0].size,
                              guidance=max(s.spec.guidance for s in stages))
        rngs = [RandomSources.from_seed(seed_for(n)) for n in (tuple(plan.frames) or (1001,))]
        with torch.inference_mode():
            return generate_images(self, stages, cond, rngs, out_size=out)


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
    register(ExampleBackend())


@hookimpl
def register_presets(register):
    for preset in packaged("cinescale_example"):
        register(preset)
