"""The Wan model adapter: diffusers' Wan components behind the core contract
(:class:`cinescale_post.api.ModelAdapter`, ALGORITHM.md 4).

What is Wan's own lives here: loading (``loading.py``), the normalised VAE
latents, T5 (and CLIP image) conditioning, the CFG velocity of the expert for
each timestep (Wan 2.2 A14B has two), the stage's flow shift ("noise
shifting") and reference sigma grid, NTK-RoPE and the attention temperature
as stage handles on every expert, LoRA, offload and VAE tiles, the memory
profile. The core render driver does the ladder (latent trilinear upsampling,
re-noising at the restart index), the noise policy ("reference": fresh CPU
generators per tensor), the window padding to 4k+1 frames and the back-off.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from cinescale_post.api import (Capabilities, FrameRule, MemoryProfile, Model, ModelAdapter, ModelInfo, ModelPlan,
                                PatchPoints, PlanError, empty_cache)

from . import memory
from .conditioning import WanCond, image_latent, wan_condition
from .memory import COMPONENTS
from .offload import DeviceSlot
from .options import WanOptions, WanStage, in_model_dtype, parse_wan_stages, wan_stage

log = logging.getLogger(__name__)

# The self-attention of every block: declared to the core, which gives Wan its context parallelism.
SELF_ATTENTION = ("blocks.*.attn1.processor",)


def latent_frames(n: int, temporal: int = 4) -> int:
    """Latent frames of an n-frame (4k+1) clip: (n - 1) // 4 + 1 (81 -> 21)."""
    return (int(n) - 1) // temporal + 1


class WanModel(Model):
    """A loaded Wan pipeline (one render's state)."""

    id = "wan"

    def __init__(self, pipe: Any, *, device: Any = "cpu", dtype: Any = None, options: WanOptions | None = None):
        import torch

        from .loading import detect_variant

        self.options = opts = options or WanOptions()
        self.model_dtype = dtype or torch.float32
        self.dtype = torch.float32 if opts.latent_dtype == "float32" else self.model_dtype
        self.device = torch.device(device)
        self.slot = DeviceSlot(self.device, opts.offload)  # offload = "model": the one resident component
        self._lora = None
        self._stage: WanStage | None = None  # the running stage's Wan values (set by stage_patches)
        self.pipe = pipe
        self.variant = detect_variant(pipe)
        log.info("wan: found %s (%s)", self.variant.name, self.variant.to_dict())
        for m in self.transformers:
            if m.dtype != self.model_dtype:
                m.to(self.model_dtype)
        if pipe.text_encoder is not None and pipe.text_encoder.dtype != self.model_dtype:
            pipe.text_encoder.to(self.model_dtype)
        if in_model_dtype(opts.vae_dtype, self.device):
            pipe.vae.to(self.model_dtype)
        if opts.vae_tiling:
            memory.set_tiles(pipe.vae, opts.vae_tile, opts.vae_stride)
        else:
            pipe.vae.disable_tiling()
        if opts.offload == "none":
            for name in COMPONENTS:
                mod = getattr(pipe, name, None)
                if mod is not None:
                    mod.to(self.device)
        if opts.lora:
            self._apply_lora(opts)

    def _apply_lora(self, opts: WanOptions) -> None:
        from cinescale_post.api import HandleGroup, apply_lora, load_lora

        pairs = load_lora(opts.lora)
        group = HandleGroup("lora")
        try:
            for m in self.transformers:
                group.add(apply_lora(self.slot.use(m), pairs, scale=opts.lora_scale, merge=opts.lora_merge))
        except BaseException:
            group.remove()
            raise
        self._lora = group
        log.info("wan: LoRA %s applied (%s, scale %g)", opts.lora, "merged" if opts.lora_merge else "unmerged",
                 opts.lora_scale)

    @property
    def transformers(self) -> list:
        pipe = self.pipe
        return [m for m in (pipe.transformer, getattr(pipe, "transformer_2", None)) if m is not None]

    @property
    def model_info(self) -> ModelInfo:
        cfg = self.pipe.vae.config
        lf = int(getattr(cfg, "scale_factor_spatial", 8) or 8)
        tf = int(getattr(cfg, "scale_factor_temporal", 4) or 4)
        patch = tuple(self.transformers[0].config.patch_size)
        base = (832, 480) if self.variant.size == "1.3B" else (1280, 720)
        return ModelInfo(base_size=base, latent_factor=lf, latent_channels=int(cfg.z_dim),
                         size_multiple=lf * int(patch[-1]), temporal_factor=tf)

    @property
    def patch_points(self) -> PatchPoints:
        # No fusion_attention: scale fusion is the UNet half of the method; a DiT's
        # self-attention takes NTK-RoPE and the temperature instead (ALGORITHM.md 4).
        return PatchPoints(extra=(("rope", "rope"), ("temperature", SELF_ATTENTION)))

    @property
    def denoiser(self):
        return self.transformers[0]

    @property
    def denoisers(self):
        return self.transformers  # both experts of Wan 2.2 A14B take every stage patch

    def make_scheduler(self, stage=None):
        """A fresh scheduler with ``stage``'s flow shift (the base shift outside a ladder)."""
        from .scheduler import make_flow_scheduler, with_shift

        shift = self._stage_shift(wan_stage(stage.spec) if stage is not None else WanStage())
        if self.options.scheduler == "model":
            return with_shift(copy.deepcopy(self.pipe.scheduler), shift)
        return make_flow_scheduler(shift, sigmas="diffusers")  # the reference grid comes from stage_sigmas

    def stage_sigmas(self, stage):
        from cinescale_post.api import flow_sigmas

        if self.options.scheduler == "model" or self.options.sigmas != "reference":
            return None
        return flow_sigmas(stage.spec.steps)

    def stage_patches(self, stage):
        """NTK-RoPE with the stage's factors and the attention temperature on
        every expert, for the whole stage (base stage included)."""
        from cinescale_post.api import (AttentionScaleSpec, RopeSpec, apply_attention_scale_many,
                                        apply_ntk_rope_many, set_attributes)

        ws = wan_stage(stage.spec)
        rope = RopeSpec(ws.ntk, rule=ws.ntk_rule)
        if not rope.identity:
            yield apply_ntk_rope_many(self.denoisers, rope)
        if ws.attention_scale is not False:
            coef = None if ws.attention_scale is True else float(ws.attention_scale)
            yield apply_attention_scale_many(self.denoisers, AttentionScaleSpec(coef=coef))
        yield set_attributes(self, "wan stage", _stage=ws)

    def stage_info(self, stage) -> dict:
        ws = wan_stage(stage.spec)
        return {"shift": self._stage_shift(ws), "ntk": list(ws.ntk), "attention_scale": ws.attention_scale}

    def _stage_shift(self, ws: WanStage) -> float:
        # An image-to-video checkpoint only does i2v, so its variant says which default applies.
        return ws.shift_for(i2v="t2v" not in self.variant.tasks and "i2v" in self.variant.tasks)

    @property
    def _shift(self) -> float:
        """The running stage's flow shift, for inspection only."""
        return self._stage_shift(self._stage or WanStage())

    def latent_shape(self, size, batch=1, frames=None):
        return super().latent_shape(size, batch, 1 if frames is None else frames)

    def _latent_stats(self, z):
        import torch

        cfg = self.pipe.vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1).to(z.device, torch.float32)
        std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1).to(z.device, torch.float32)
        return mean, std

    def encode(self, pixels, *, generator=None, sample=False):
        """(B, 3, F, H, W) (or (B, 3, H, W)) in [-1, 1] -> normalised latents."""
        import torch

        vae = self.pipe.vae
        x = pixels.unsqueeze(2) if pixels.ndim == 4 else pixels
        self.slot.use(vae)
        with torch.no_grad():
            dist = vae.encode(x.to(device=self.device, dtype=vae.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        z = z.float()
        mean, std = self._latent_stats(z)
        return ((z - mean) / std).to(self.dtype)

    def decode(self, latents):
        """Normalised latents -> pixels (B, 3, F, H, W) in about [-1, 1]."""
        import torch

        vae = self.pipe.vae
        z = latents.to(self.device).float()
        mean, std = self._latent_stats(z)
        self.slot.use(vae)
        with torch.no_grad():
            return vae.decode((z * std + mean).to(vae.dtype), return_dict=False)[0]

    def check_task(self, task, image=None) -> None:
        if task == "i2v" and "i2v" not in self.variant.tasks:
            raise PlanError(f"backend_options.image is set but {self.variant.name} is not an image-to-video model",
                            fix="use a Wan I2V model, or remove the image for text-to-video")
        if task == "t2v" and "t2v" not in self.variant.tasks:
            raise PlanError(f"{self.variant.name} needs a first frame", fix="set backend_options.image")

    def condition(self, prompt, negative_prompt="", *, size=None, guidance=5.0, image=None, prompt_embeds=None):
        """T5 text conditioning (``prompt_embeds``: (pe, npe) precomputed, for
        models saved without a text encoder); ``image``: (H, W, 3) in [0, 1]
        for image-to-video (``conditioning.py``)."""
        return wan_condition(self, prompt, negative_prompt, guidance=guidance, image=image,
                             prompt_embeds=prompt_embeds)

    def _expert(self, t):
        pipe = self.pipe
        ratio = pipe.config.get("boundary_ratio") if hasattr(pipe, "config") else None
        tr2 = getattr(pipe, "transformer_2", None)
        if ratio is None or tr2 is None:
            return pipe.transformer, False
        return (pipe.transformer, False) if float(t) >= float(ratio) * 1000.0 else (tr2, True)

    def predict(self, x, t, cond: WanCond, *, guidance):
        """CFG velocity ``u + g (c - u)`` from two passes (or one batch with
        ``cfg_batch``) of the expert for ``t``. x: (B, z, F, h, w)."""
        import torch

        model, low = self._expert(t)
        g = self.options.guidance_2 if (low and self.options.guidance_2 is not None) else guidance
        inp = x.to(self.model_dtype)
        if cond.image is not None:
            if self.variant.expand_timesteps:
                raise PlanError(f"image-to-video with {self.variant.name} is not supported by this backend yet",
                                fix="use a Wan 2.1 I2V or Wan 2.2 A14B I2V model, or text-to-video")
            inp = torch.cat([inp, image_latent(self, cond, x.shape)], dim=1)
        b = inp.shape[0]
        tt = torch.as_tensor(t, device=inp.device, dtype=torch.float32)
        if in_model_dtype(self.options.timestep_dtype, inp.device):  # reference: t in bf16 on GPU
            tt = tt.to(self.model_dtype)
        if self.variant.expand_timesteps:
            p = model.config.patch_size
            ts = tt.reshape(1, 1).expand(b, (x.shape[2] // p[0]) * (x.shape[3] // p[1]) * (x.shape[4] // p[2]))
        else:
            ts = tt.reshape(1).expand(b)
        use_cfg = guidance > 1.0 and cond.negative_embeds is not None
        extra = {"encoder_hidden_states_image": cond.image_embeds} if cond.image_embeds is not None else {}
        self.slot.use(model)  # resident until another component needs the device (offload = "model")
        with torch.no_grad():
            if use_cfg and self.options.cfg_batch:
                if cond.negative_embeds.shape[1] != cond.prompt_embeds.shape[1]:
                    raise ValueError("cfg_batch needs prompt and negative embeddings of the same length")
                both = model(hidden_states=torch.cat([inp, inp]), timestep=torch.cat([ts, ts]),
                             encoder_hidden_states=torch.cat([cond.negative_embeds, cond.prompt_embeds]),
                             return_dict=False, **({k: torch.cat([v, v]) for k, v in extra.items()}))[0]
                u, c = both.chunk(2)
                return (u + g * (c - u)).to(x.dtype)
            c = model(hidden_states=inp, timestep=ts, encoder_hidden_states=cond.prompt_embeds, return_dict=False,
                      **extra)[0]
            if not use_cfg:
                return c.to(x.dtype)
            u = model(hidden_states=inp, timestep=ts, encoder_hidden_states=cond.negative_embeds, return_dict=False,
                      **extra)[0]
        return (u + g * (c - u)).to(x.dtype)

    def to_frames(self, pixels, size):
        from cinescale_post.api import fit_frames

        return fit_frames(pixels, size, self.options.fit)

    # ------------------------------------------------------------ memory settings (memory.py)

    def memory_steps(self) -> list:
        return memory.memory_steps(self)

    def apply_memory(self, step) -> str:
        return memory.apply_memory(self, step)

    def apply_memory_choice(self, choice) -> str | None:
        return memory.apply_memory_choice(self, choice)

    def unload(self) -> None:
        if self._lora is not None:
            self._lora.remove()
        self._lora = None
        self.pipe = None
        empty_cache()


class WanAdapter(ModelAdapter):
    id = "wan"
    description = "Wan 2.1/2.2 DiT (CineScale: NTK-RoPE, attention temperature, noise shifting, video cascade, LoRA)"
    capabilities = Capabilities(tasks=frozenset({"t2v", "i2v", "v2v"}), family="dit", latent_layout="video",
                                frame_rule=FrameRule(4, 1), noise=("reference", "stream"),
                                option_defaults={"posterior": "mean", "num_frames": 81}, attention=SELF_ATTENTION)
    oom_advice = ("use dtype bfloat16, backend_options.offload = \"model\", smaller vae_tile, fewer frames per "
                  "window, or a smaller last stage")
    options_type = WanOptions

    def parse_stages(self, stages):
        return parse_wan_stages(stages)[0]

    def weight_files(self, plan: ModelPlan) -> list[str]:
        from .loading import weight_files

        return weight_files(plan)

    def load(self, plan: ModelPlan) -> WanModel:
        import torch

        from .loading import load_wan_pipeline

        opts = plan.options
        dtype = getattr(torch, plan.dtype)
        vae_dtype = dtype if in_model_dtype(opts.vae_dtype, plan.device) else torch.float32
        pipe = load_wan_pipeline(plan.model, dtype, vae_dtype=vae_dtype, config=opts.config or None)
        return WanModel(pipe, device=plan.device, dtype=dtype, options=opts)

    def load_key(self, plan: ModelPlan):
        return plan.weights_key()  # load reads the weights, device, dtype and options only

    def meta_build(self):
        from .meta import WanMetaBuild

        return WanMetaBuild()

    def tiny_model(self, device="cpu") -> dict:
        import torch

        from .tiny import tiny_wan_pipeline

        model = WanModel(tiny_wan_pipeline(0), device=device, dtype=torch.float32,
                         options=WanOptions(max_sequence_length=32))
        return {"model": model, "size": (64, 64), "frames": 3, "prompt": "a brown owl in the snow",
                "negative_prompt": "blurry", "facts": {"variant": model.variant.name},
                "stages": [{"size": [32, 32], "steps": 4, "shift": 7.0},
                           {"size": [64, 64], "steps": 4, "restart_step": 1, "shift": 11.0, "attention_scale": 1.5}]}

    def memory_profile(self, plan: ModelPlan) -> MemoryProfile | str:
        return memory.memory_profile(plan)


__all__ = ["WanAdapter", "WanCond", "WanModel", "latent_frames"]
