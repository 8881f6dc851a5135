"""The SDXL model adapter: diffusers' SDXL components behind the core contract
(:class:`cinescale_post.api.ModelAdapter`).

What is SDXL's own lives here: loading (a diffusers folder or one
``.safetensors`` file, never a pickle, never a download), VAE encode/decode
with SDXL's latent statistics, prompt encoding with micro-conditioning, the
guided UNet call, FreeScale's restrained-dilation list and the self-attention
layers of scale fusion, FreeU, the VAE tile / offload settings and the memory
profile. The core render driver does the rest (ladder, noise policies,
temporal post-ops, back-off, smoke test).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cinescale_post.api import (Capabilities, MemoryProfile, Model, ModelAdapter, ModelInfo, ModelPlan, PatchPoints,
                                WeightsError, empty_cache)

from .loading import load_pipeline, memory_profile
from .options import SDXL_SELF_ATTENTION, TURBO_SAMPLE_SIZE, SDXLOptions

@dataclass
class SDXLCond:
    prompt_embeds: Any  # (2B or B, 77, D)
    text_embeds: Any  # pooled
    time_ids: Any
    cfg: bool


def _latent_stats(cfg, z):
    import torch

    if getattr(cfg, "latents_mean", None) is None or getattr(cfg, "latents_std", None) is None:
        return None
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(z.device, z.dtype)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(z.device, z.dtype)
    return mean, std


class SDXLModel(Model):
    """A loaded SDXL pipeline (one render's state)."""

    id = "sdxl"

    def __init__(self, pipe: Any, *, device: Any = "cpu", dtype: Any = None, options: SDXLOptions | None = None):
        import torch

        self.options = options or SDXLOptions.from_dict({})
        dtype = dtype or torch.float32
        pipe.to(device)
        if pipe.unet.dtype != dtype:
            pipe.to(dtype=dtype)
        vae_fp32 = self.options.vae_fp32
        if vae_fp32 is True or (vae_fp32 == "auto" and dtype == torch.float16
                                and getattr(pipe.vae.config, "force_upcast", False)):
            pipe.vae.to(torch.float32)
        if self.options.vae_tiling:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()
        self.pipe = pipe
        self.device = torch.device(device)
        self.dtype = dtype
        self.vae_dtype = pipe.vae.dtype
        self._scheduler = copy.deepcopy(pipe.scheduler)
        self._offload = "none"
        self._f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)

    @property
    def turbo(self) -> bool:
        """SDXL-Turbo (``options.turbo``; "auto": an SDXL UNet whose sample_size is 64)."""
        cfg = self.pipe.unet.config
        if self.options.turbo != "auto":
            return bool(self.options.turbo)
        return int(cfg.sample_size) == TURBO_SAMPLE_SIZE and getattr(cfg, "addition_embed_type", None) == "text_time"

    @property
    def model_info(self) -> ModelInfo:
        base = int(self.pipe.unet.config.sample_size) * self._f
        dilation_base = None
        if self.turbo:  # reference turbo pipeline: windows keyed to 512 (64 latents), dilation W // 1024
            base = TURBO_SAMPLE_SIZE * self._f
            dilation_base = (2 * base, 2 * base)
        # the diffusers UNet takes any latent size (it forwards upsample sizes), so
        # stages only snap to whole latent cells: 3840x2160 stays 3840x2160.
        return ModelInfo(base_size=(base, base), latent_factor=self._f,
                         latent_channels=int(self.pipe.unet.config.in_channels), size_multiple=self._f,
                         dilation_base=dilation_base)

    @property
    def patch_points(self) -> PatchPoints:
        boc = tuple(self.pipe.unet.config.block_out_channels)
        return PatchPoints(dilate_convs=tuple(self.options.dilate_convs), fusion_attention=SDXL_SELF_ATTENTION,
                           freeu=len(boc) >= 2)  # keyed on the decoder stage (ops.freeu)

    @property
    def denoiser(self):
        return self.pipe.unet

    def make_scheduler(self, stage=None):
        return copy.deepcopy(self._scheduler)

    def freeu(self):
        if not self.options.freeu or not self.patch_points.freeu:
            return None
        from cinescale_post.api import FreeUSpec

        opts = dict(self.options.freeu)
        stage_rule = opts.pop("rule", "reference") == "stage"
        return FreeUSpec(**opts, **({"channels": None} if stage_rule else {}))

    def encode(self, pixels, *, generator=None, sample=True):
        vae = self.pipe.vae
        dist = vae.encode(pixels.to(device=self.device, dtype=vae.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        cfg = vae.config
        stats = _latent_stats(cfg, z)
        if stats is not None:
            return ((z - stats[0]) * cfg.scaling_factor / stats[1]).to(self.dtype)
        return z.to(self.dtype) * cfg.scaling_factor

    def decode(self, latents):
        vae = self.pipe.vae
        cfg = vae.config
        z = latents.to(device=self.device, dtype=vae.dtype)
        stats = _latent_stats(cfg, z)
        z = z * stats[1] / cfg.scaling_factor + stats[0] if stats is not None else z / cfg.scaling_factor
        return vae.decode(z, return_dict=False)[0]

    def condition(self, prompt, negative_prompt="", *, size, guidance, image=None, prompt_embeds=None):
        """SDXL text conditioning plus micro-conditioning for (width, height)
        ``size`` (reference: the base stage's size, reused by every stage).
        ``prompt_embeds``: optional (embeds, pooled[, neg_embeds, neg_pooled]) for
        models saved without text encoders."""
        import torch

        pipe = self.pipe
        cfg = guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
        kw: dict[str, Any] = {}
        if prompt_embeds is not None:
            kw.update(prompt_embeds=prompt_embeds[0], pooled_prompt_embeds=prompt_embeds[1])
            if len(prompt_embeds) == 4:
                kw.update(negative_prompt_embeds=prompt_embeds[2], negative_pooled_prompt_embeds=prompt_embeds[3])
            prompt = None
        elif pipe.text_encoder is None and pipe.text_encoder_2 is None:
            raise WeightsError("this SDXL model has no text encoders, so a text prompt cannot be encoded",
                               fix="use a model folder with text_encoder/ and text_encoder_2/")
        with torch.no_grad():
            pe, npe, pooled, npooled = pipe.encode_prompt(
                prompt=prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
                negative_prompt=negative_prompt or None, **kw)
        proj = int(pooled.shape[-1]) if pipe.text_encoder_2 is None else pipe.text_encoder_2.config.projection_dim
        w, h = size
        time_ids = pipe._get_add_time_ids((h, w), (0, 0), (h, w), dtype=pe.dtype, text_encoder_projection_dim=proj)
        if cfg:
            pe, pooled, time_ids = torch.cat([npe, pe]), torch.cat([npooled, pooled]), torch.cat([time_ids, time_ids])
        return SDXLCond(pe.to(self.device, self.dtype), pooled.to(self.device, self.dtype),
                        time_ids.to(self.device), cfg)

    def predict(self, x, t, cond: SDXLCond, *, guidance):
        import torch

        pe, te, ti = cond.prompt_embeds, cond.text_embeds, cond.time_ids
        use_cfg = cond.cfg and guidance > 1.0
        if cond.cfg and not use_cfg:  # conditional half only
            pe, te, ti = pe[pe.shape[0] // 2:], te[te.shape[0] // 2:], ti[ti.shape[0] // 2:]
        x_in = torch.cat([x, x]) if use_cfg else x
        rows = x_in.shape[0]
        if pe.shape[0] != rows:  # several frames in one batch: [uncond * B, cond * B]
            reps = rows // pe.shape[0]
            pe, te, ti = (v.repeat_interleave(reps, dim=0) for v in (pe, te, ti))
        with torch.no_grad():
            out = self.pipe.unet(x_in, t, encoder_hidden_states=pe,
                                 added_cond_kwargs={"text_embeds": te, "time_ids": ti}, return_dict=False)[0]
        if use_cfg:
            u, c = out.chunk(2)
            out = u + guidance * (c - u)
        return out

    # ------------------------------------------------------------ memory settings

    def memory_steps(self) -> list:
        """Cheaper settings still available, in order: VAE tiling on, halved
        VAE tiles (down to a quarter of the VAE's sample size, never under
        twice the latent factor), then model and sequential CPU offload
        (accelerators only: on CPU there is nowhere to offload to)."""
        if self._offload == "model":
            return [("offload", "sequential")]
        if self._offload == "sequential":
            return []
        vae = self.pipe.vae
        steps: list = [] if getattr(vae, "use_tiling", False) else [("tiling", int(vae.tile_sample_min_size))]
        t = int(vae.tile_sample_min_size)
        floor = max(2 * self._f, int(vae.config.sample_size) // 4)
        while t // 2 >= floor:
            t //= 2
            steps.append(("tile", t))
        if self.device.type != "cpu":
            steps += [("offload", "model"), ("offload", "sequential")]
        return steps

    def apply_memory(self, step) -> str:
        kind, value = step
        vae = self.pipe.vae
        if kind == "tiling":
            vae.enable_tiling()
            return f"VAE tiling on ({value} px tiles)"
        if kind == "tile":
            vae.tile_sample_min_size, vae.tile_latent_min_size = value, value // self._f
            return f"VAE tiles of {value} px"
        if value == "model":
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.remove_all_hooks()
            self.pipe.enable_sequential_cpu_offload(device=self.device)
        self._offload = value
        return f"{value} CPU offload"

    def apply_memory_choice(self, choice) -> str | None:
        """VAE tile size and CPU offload chosen by the planner; what changed."""
        vae = self.pipe.vae
        done = []
        tile = choice.get("vae_tile")
        if tile:
            before = (bool(getattr(vae, "use_tiling", False)), int(vae.tile_sample_min_size))
            vae.enable_tiling()
            vae.tile_sample_min_size, vae.tile_latent_min_size = int(tile), int(tile) // self._f
            if before != (True, int(tile)):
                done.append(f"VAE tiles of {tile} px")
        offload = choice.get("offload", "none")
        if offload != "none" and self.device.type != "cpu" and self._offload == "none":
            done.append(self.apply_memory(("offload", offload)))
        return ", ".join(done) or None

    def unload(self) -> None:
        self.pipe = None
        empty_cache()


class SDXLAdapter(ModelAdapter):
    id = "sdxl"
    description = "SDXL-family UNet (FreeScale: self-cascade, restrained dilation, scale fusion, FreeU)"
    capabilities = Capabilities(tasks=frozenset({"v2v", "t2i"}), family="unet", latent_layout="image")
    oom_advice = "use fusion fast_mode = true, window_batch = 4, a smaller last stage, or dtype float16"
    options_type = SDXLOptions

    def weight_files(self, plan: ModelPlan) -> list[str]:
        if not plan.model:
            return []
        p = Path(plan.model)
        return [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*.safetensors"))

    def load(self, plan: ModelPlan) -> SDXLModel:
        import torch

        opts = plan.options
        dtype = getattr(torch, plan.dtype)
        return SDXLModel(load_pipeline(plan.model, dtype, config=opts.config), device=plan.device, dtype=dtype,
                         options=opts)

    def load_key(self, plan: ModelPlan):
        return plan.weights_key()  # load reads the weights, device, dtype and options only

    def meta_build(self):
        from .meta import SDXLMetaBuild

        return SDXLMetaBuild()

    def tiny_model(self, device="cpu") -> dict:
        import torch
        from diffusers import StableDiffusionXLPipeline

        from .tiny import build_tiny_sdxl

        pipe = StableDiffusionXLPipeline(**build_tiny_sdxl(0))
        return {"model": SDXLModel(pipe, device=device, dtype=torch.float32), "size": (128, 128),
                "stages": [{"scale": 1, "steps": 4}, {"scale": 2, "steps": 4, "restart_step": 1, "dilate_tau": 3}],
                "prompt": "a photo of the cat"}

    def memory_profile(self, plan: ModelPlan) -> MemoryProfile | str:
        """Components and per-stage demand from the model folder's configs (loading.py)."""
        return memory_profile(plan)

__all__ = ["SDXLAdapter", "SDXLModel", "SDXLOptions", "load_pipeline"]
