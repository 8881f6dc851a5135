"""The Wan backend: a :class:`~cinescale_post.cascade.DiffusionBackend` on
diffusers' Wan components, driven by the core cascade loop (ALGORITHM.md 4).

The core ladder (:func:`~cinescale_post.cascade.loop.run_ladder`) drives it
through the protocol's per-stage hooks: ``stage_patches`` puts NTK-RoPE with
the stage's factors and the self-attention temperature on every expert
(``denoisers``) as removable handles, ``make_scheduler(stage)`` gives the
stage's flow shift ("noise shifting") and ``stage_sigmas`` the reference sigma
grid. The core does the rest: base stage from noise, or latent trilinear
upsampling of the previous result, re-noising with the flow-matching forward
process at the restart index (15 of 50) and denoising to the end with CFG 5.
Render windows go through :func:`~cinescale_post.cascade.run.refine_video`.

Lifecycle: ``validate`` (plan time, no torch) -> ``load(plan)`` ->
``render(job)`` per window (video-to-video refine) / ``generate(plan,
seed_for)`` (text/image to video) -> ``unload()``. ``smoke(device)`` builds a
tiny random model in memory and runs a two-stage cascade.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cinescale_post.devices import empty_cache
from cinescale_post.cascade.protocol import DiffusionBackend, ModelInfo, PatchPoints
from cinescale_post.cascade.stages import StageSpec, resolve_ladder
from cinescale_post.errors import OutOfMemoryError, PlanError, WeightsError
from cinescale_post.interfaces import FrameRule, WindowJob

from .options import WanOptions, WanStage, in_model_dtype, parse_wan_stages, wan_stage

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")
SELF_ATTENTION = ("blocks.*.attn1.processor",)


@dataclass
class WanCond:
    """Text (and image) conditioning; opaque to the core loop."""

    prompt_embeds: Any
    negative_embeds: Any = None
    image: Any = None  # (H, W, 3) float32 in [0, 1] for image-to-video
    image_embeds: Any = None  # CLIP hidden states (Wan 2.1 I2V)
    cache: dict = field(default_factory=dict)


def padded_length(n: int, rule: FrameRule = FrameRule(4, 1)) -> int:
    """Smallest length >= n the model accepts (4k+1): 1 -> 1, 5 -> 5, 6 -> 9, 23 -> 25."""
    k = max(n, rule.offset or 1)
    while not rule.accepts(k):
        k += 1
    return k


def latent_frames(n: int, temporal: int = 4) -> int:
    """Latent frames of an n-frame (4k+1) clip: (n - 1) // 4 + 1 (81 -> 21)."""
    return (int(n) - 1) // temporal + 1


class WanBackend(DiffusionBackend):
    id = "wan"
    family = "dit"
    capabilities = frozenset({"t2v", "i2v", "v2v"})
    frame_rule = FrameRule(4, 1)
    temporal = True
    description = "Wan 2.1/2.2 DiT (CineScale: NTK-RoPE, attention temperature, noise shifting, video cascade, LoRA)"

    def __init__(self) -> None:
        self.pipe: Any = None
        self.plan: Any = None
        self.options = WanOptions()
        self.specs: list[StageSpec] = []
        self.variant: Any = None
        self.device: Any = "cpu"
        self.dtype: Any = None  # latent dtype (what the loop and the scheduler see)
        self.model_dtype: Any = None
        self._stage: WanStage | None = None  # the running stage's Wan values (set by stage_patches)
        self._lora: Any = None
        self._parallel: Any = None  # context parallelism handle (parallel.py)
        self._cond_cache: dict = {}

    # ------------------------------------------------------------ plan time

    def validate(self, *, stages, options, size, source):
        specs, _ = parse_wan_stages(stages)
        opts = WanOptions.from_dict(dict(options))
        return tuple(s.to_dict() for s in specs), opts.to_dict()

    def weight_files(self, plan) -> list[str]:
        files: list[str] = []
        if plan.model:
            p = Path(plan.model)
            files += [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*.safetensors"))
        opts = dict(plan.backend_options)
        if opts.get("config") and plan.model and Path(plan.model).is_file():
            files += sorted(str(f) for f in Path(opts["config"]).rglob("*.safetensors"))
        for k in ("lora", "noise_file", "image"):
            if opts.get(k):
                files.append(str(Path(opts[k])))
        return files

    # ------------------------------------------------------------ loading

    def load(self, plan) -> None:
        import torch

        if plan.dtype not in DTYPES:
            raise PlanError(f"dtype {plan.dtype!r}", fix=f"use one of: {', '.join(DTYPES)}")
        self.plan = plan
        opts = WanOptions.from_dict(dict(plan.backend_options))
        self.specs, _ = parse_wan_stages(list(plan.stages))
        dtype = getattr(torch, plan.dtype)
        vae_dtype = dtype if in_model_dtype(opts.vae_dtype, plan.device) else torch.float32
        from .loading import load_wan_pipeline

        pipe = load_wan_pipeline(plan.model, dtype, vae_dtype=vae_dtype, config=opts.config or None)
        self.attach(pipe, device=plan.device, dtype=dtype, options=opts)

    def attach(self, pipe: Any, *, device: Any = "cpu", dtype: Any = None, options: WanOptions | None = None,
               stages: Sequence[dict] | None = None):
        """Use an in-memory diffusers Wan pipeline (tests, smoke, benchmarks)."""
        import torch

        from .loading import detect_variant

        self.unload()
        self.options = options or self.options
        if stages is not None:
            self.specs, _ = parse_wan_stages(list(stages))
        opts = self.options
        self.model_dtype = dtype or torch.float32
        self.dtype = torch.float32 if opts.latent_dtype == "float32" else self.model_dtype
        self.device = torch.device(device)
        if opts.context_parallel:  # context parallelism (parallel.py): process group + this rank's device
            from .parallel import init_distributed

            self.device = init_distributed(opts.context_parallel, self.device)
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
            pipe.vae.enable_tiling(tile_sample_min_height=opts.vae_tile[0], tile_sample_min_width=opts.vae_tile[1],
                                   tile_sample_stride_height=opts.vae_stride[0],
                                   tile_sample_stride_width=opts.vae_stride[1])
        else:
            pipe.vae.disable_tiling()
        if opts.offload == "none":
            for name in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
                mod = getattr(pipe, name, None)
                if mod is not None:
                    mod.to(self.device)
        if opts.lora:
            from cinescale_post.ops.handles import HandleGroup
            from cinescale_post.ops.lora import apply_lora, load_lora

            pairs = load_lora(opts.lora)
            group = HandleGroup("lora")
            try:
                for m in self.transformers:
                    with self._placed(m):
                        group.add(apply_lora(m, pairs, scale=opts.lora_scale, merge=opts.lora_merge))
            except BaseException:
                group.remove()
                raise
            self._lora = group
            log.info("wan: LoRA %s applied (%s, scale %g)", opts.lora, "merged" if opts.lora_merge else "unmerged",
                     opts.lora_scale)
        if opts.context_parallel:  # context parallelism (parallel.py): after LoRA, before any stage handle
            from .parallel import enable_context_parallel

            self._parallel = enable_context_parallel(self.transformers, opts.context_parallel, device=self.device,
                                                     dtype=self.model_dtype)
        self._cond_cache = {}
        return self

    def unload(self) -> None:
        if self._parallel is not None:  # context parallelism (parallel.py)
            self._parallel.remove()
            self._parallel = None
        if self._lora is not None:
            self._lora.remove()
            self._lora = None
        self.pipe = None
        self._cond_cache = {}
        empty_cache()

    def _need(self):
        if self.pipe is None:
            raise RuntimeError("the wan backend is not loaded; call load(plan) first")
        return self.pipe

    @contextlib.contextmanager
    def _placed(self, module):
        """``offload = "model"``: the module sits on the device only while used."""
        if module is None or self.options.offload == "none":
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")

    @property
    def transformers(self) -> list:
        pipe = self._need()
        return [m for m in (pipe.transformer, getattr(pipe, "transformer_2", None)) if m is not None]

    # ------------------------------------------------------------ protocol

    @property
    def model_info(self) -> ModelInfo:
        pipe = self._need()
        lf = int(getattr(pipe.vae.config, "scale_factor_spatial", 8) or 8)
        tf = int(getattr(pipe.vae.config, "scale_factor_temporal", 4) or 4)
        patch = tuple(self.transformers[0].config.patch_size)
        base = (832, 480) if self.variant is not None and self.variant.size == "1.3B" else (1280, 720)
        return ModelInfo(base_size=base, latent_factor=lf, latent_channels=int(pipe.vae.config.z_dim),
                         size_multiple=lf * int(patch[-1]), temporal_factor=tf)

    @property
    def patch_points(self) -> PatchPoints:
        # No fusion_attention: scale fusion is the UNet half of the method; a
        # DiT's self-attention takes NTK-RoPE and the temperature instead
        # (ALGORITHM.md section 4), declared as extra points.
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

        pipe = self._need()
        shift = (wan_stage(stage.spec) if stage is not None else WanStage()).shift
        if self.options.scheduler == "model":
            return with_shift(copy.deepcopy(pipe.scheduler), shift)
        # Plain spacing here; the reference grid comes from stage_sigmas.
        return make_flow_scheduler(shift, sigmas="diffusers")

    def stage_sigmas(self, stage):
        """The reference (N+1)-grid (``sigmas = "reference"``) for the built-in
        flow-matching Euler; None keeps the scheduler's own spacing."""
        from cinescale_post.cascade.schedule import flow_sigmas

        if self.options.scheduler == "model" or self.options.sigmas != "reference":
            return None
        return flow_sigmas(stage.spec.steps)

    def stage_patches(self, stage):
        """NTK-RoPE with the stage's factors and the attention temperature on
        every expert, for the whole stage (base stage included)."""
        from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale_many
        from cinescale_post.ops.handles import set_attributes
        from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope_many

        ws = wan_stage(stage.spec)
        rope = RopeSpec(ws.ntk, rule=ws.ntk_rule)
        if not rope.identity:
            yield apply_ntk_rope_many(self.denoisers, rope)
        if ws.attention_scale is not False:
            coef = None if ws.attention_scale is True else float(ws.attention_scale)
            yield apply_attention_scale_many(self.denoisers, AttentionScaleSpec(coef=coef))
        yield set_attributes(self, "wan stage", _stage=ws)

    @property
    def _shift(self) -> float:
        """The running stage's flow shift, for inspection only (the scheduler
        gets it from ``make_scheduler(stage)``)."""
        return (self._stage or WanStage()).shift

    def latent_shape(self, size, batch=1, frames=1):
        info = self.model_info
        w, h = size
        return (batch, info.latent_channels, frames, h // info.latent_factor, w // info.latent_factor)

    def _latent_stats(self, z):
        import torch

        cfg = self._need().vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1).to(z.device, torch.float32)
        std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1).to(z.device, torch.float32)
        return mean, std

    def encode(self, pixels, *, generator=None, sample=False):
        """(B, 3, F, H, W) (or (B, 3, H, W): one frame) in [-1, 1] -> normalised
        latents (B, z, (F-1)//4+1, H/8, W/8) in the latent dtype."""
        import torch

        vae = self._need().vae
        x = pixels.unsqueeze(2) if pixels.ndim == 4 else pixels
        with self._placed(vae), torch.no_grad():
            dist = vae.encode(x.to(device=self.device, dtype=vae.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        z = z.float()
        mean, std = self._latent_stats(z)
        return ((z - mean) / std).to(self.dtype)

    def decode(self, latents):
        """Normalised latents -> pixels (B, 3, F, H, W) in about [-1, 1]."""
        import torch

        vae = self._need().vae
        z = latents.to(self.device).float()
        mean, std = self._latent_stats(z)
        z = z * std + mean
        with self._placed(vae), torch.no_grad():
            return vae.decode(z.to(vae.dtype), return_dict=False)[0]

    def condition(self, prompt, negative_prompt="", *, size=None, guidance=5.0, prompt_embeds=None, image=None):
        """T5 text conditioning (``prompt_embeds``: (pe, npe) precomputed, for
        models saved without a text encoder); ``image``: (H, W, 3) in [0, 1]
        for image-to-video (CLIP image states when the model has an image
        encoder; the VAE image latent is made per stage size in ``predict``)."""
        import torch

        pipe = self._need()
        cfg = guidance > 1.0
        key = (prompt, negative_prompt, cfg, id(prompt_embeds), id(image))
        if key in self._cond_cache:
            return self._cond_cache[key]
        if prompt_embeds is not None:
            pe, npe = prompt_embeds
        else:
            if pipe.text_encoder is None:
                raise WeightsError("this Wan model has no text encoder, so a text prompt cannot be encoded",
                                   fix="use a model folder with text_encoder/ and tokenizer/")
            # WanPipeline's T5 path on any Wan pipeline: the I2V/V2V copies in diffusers
            # 0.42 call ftfy unguarded (NameError without ftfy); WanPipeline guards it.
            from diffusers import WanPipeline

            with self._placed(pipe.text_encoder), torch.no_grad():
                kw = dict(num_videos_per_prompt=1, max_sequence_length=self.options.max_sequence_length,
                          device=self.device)
                pe = WanPipeline._get_t5_prompt_embeds(pipe, prompt=prompt, **kw)
                npe = WanPipeline._get_t5_prompt_embeds(pipe, prompt=negative_prompt or "", **kw) if cfg else None
        img_embeds = None
        if image is not None and getattr(pipe, "image_encoder", None) is not None \
                and self.transformers[0].config.image_dim is not None:
            from PIL import Image
            import numpy as np

            if self.options.max_sequence_length != 512:
                raise PlanError(f"backend_options.max_sequence_length = {self.options.max_sequence_length}: "
                                f"{self.variant.name} splits image and text context at 512 text tokens",
                                fix="use max_sequence_length = 512 (the default) for image-to-video")
            pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype("uint8"))
            with self._placed(pipe.image_encoder), torch.no_grad():
                img_embeds = pipe.encode_image(pil, self.device).to(self.model_dtype)
        cond = WanCond(pe.to(self.device, self.model_dtype),
                       npe.to(self.device, self.model_dtype) if (cfg and npe is not None) else None,
                       image=image, image_embeds=img_embeds)
        self._cond_cache[key] = cond
        return cond

    def _image_latent(self, cond: WanCond, shape) -> Any:
        """The (1, 4 + z, F, h, w) mask + VAE latent of the first frame at this
        latent size (Wan I2V), cached per shape."""
        import torch
        import torch.nn.functional as F

        key = tuple(shape)
        if key in cond.cache:
            return cond.cache[key]
        pipe = self._need()
        info = self.model_info
        _, _, f, h, w = shape
        H, W = h * info.latent_factor, w * info.latent_factor
        img = torch.from_numpy(cond.image).permute(2, 0, 1)[None].float() * 2 - 1
        img = F.interpolate(img, size=(H, W), mode="bicubic", align_corners=False).clamp(-1, 1)
        num_frames = (f - 1) * info.temporal_factor + 1
        with self._placed(pipe.vae), torch.no_grad():
            out = pipe.prepare_latents(img.to(self.device), 1, info.latent_channels, H, W, num_frames,
                                       torch.float32, self.device, None,
                                       torch.zeros(shape, dtype=torch.float32, device=self.device))
        y = out[1].to(self.model_dtype)
        cond.cache[key] = y
        return y

    def _expert(self, t):
        pipe = self._need()
        ratio = pipe.config.get("boundary_ratio") if hasattr(pipe, "config") else None
        tr2 = getattr(pipe, "transformer_2", None)
        if ratio is None or tr2 is None:
            return pipe.transformer, False
        boundary = float(ratio) * 1000.0
        return (pipe.transformer, False) if float(t) >= boundary else (tr2, True)

    def predict(self, x, t, cond: WanCond, *, guidance):
        """CFG velocity: ``u + g (c - u)`` from two passes (or one batch with
        ``cfg_batch``) of the expert for ``t``. x: (B, z, F, h, w)."""
        import torch

        model, low = self._expert(t)
        g = (self.options.guidance_2 if (low and self.options.guidance_2 is not None) else guidance)
        inp = x.to(self.model_dtype)
        if cond.image is not None:
            if self.variant is not None and self.variant.expand_timesteps:
                raise PlanError(f"image-to-video with {self.variant.name} is not supported by this backend yet",
                                fix="use a Wan 2.1 I2V or Wan 2.2 A14B I2V model, or text-to-video")
            inp = torch.cat([inp, self._image_latent(cond, x.shape)], dim=1)
        b = inp.shape[0]
        tt = torch.as_tensor(t, device=inp.device, dtype=torch.float32)
        if in_model_dtype(self.options.timestep_dtype, inp.device):  # reference: t in bf16 on GPU
            tt = tt.to(self.model_dtype)
        if self.variant is not None and self.variant.expand_timesteps:
            p = model.config.patch_size
            seq = (x.shape[2] // p[0]) * (x.shape[3] // p[1]) * (x.shape[4] // p[2])
            ts = tt.reshape(1, 1).expand(b, seq)
        else:
            ts = tt.reshape(1).expand(b)
        use_cfg = guidance > 1.0 and cond.negative_embeds is not None
        extra = {"encoder_hidden_states_image": cond.image_embeds} if cond.image_embeds is not None else {}
        with self._placed(model), torch.no_grad():
            if use_cfg and self.options.cfg_batch:
                both = model(hidden_states=torch.cat([inp, inp]), timestep=torch.cat([ts, ts]),
                             encoder_hidden_states=_cat_text(cond.negative_embeds, cond.prompt_embeds),
                             return_dict=False,
                             **({k: torch.cat([v, v]) for k, v in extra.items()}))[0]
                u, c = both.chunk(2)
                return (u + g * (c - u)).to(x.dtype)
            c = model(hidden_states=inp, timestep=ts, encoder_hidden_states=cond.prompt_embeds, return_dict=False,
                      **extra)[0]
            if not use_cfg:
                return c.to(x.dtype)
            u = model(hidden_states=inp, timestep=ts, encoder_hidden_states=cond.negative_embeds, return_dict=False,
                      **extra)[0]
        return (u + g * (c - u)).to(x.dtype)

    # ------------------------------------------------------------ running

    def ladder(self, mode: str, output: tuple[int, int], specs: Sequence[StageSpec] | None = None):
        info = self.model_info
        return resolve_ladder(self.specs if specs is None else specs, mode=mode, base_size=info.base_size,
                              output=output, multiple=info.size_multiple)

    def random_sources(self, seed: int, stages, frames: int):
        """Every noise tensor of one cascade run, drawn the reference way
        (``noise = "reference"``: float32 on a CPU generator; the base noise and
        each stage's re-noise from a fresh generator seeded with ``seed``), or
        from one stream (``"stream"``), or read from ``noise_file`` (controlled)."""
        import torch

        from cinescale_post.cascade.loop import RandomSources

        opts = self.options
        if opts.noise_file:
            from safetensors.torch import load_file

            data = load_file(opts.noise_file)
            renoise = [data.get(f"renoise.{s.index}") for s in stages]
            return RandomSources(generator=torch.Generator("cpu").manual_seed(int(seed)), jitter=None,
                                 posterior="mean", renoise=renoise, base_noise=data.get("base_noise"))
        if opts.noise == "stream":
            return RandomSources.from_seed(seed, jitter=False, posterior=opts.posterior)
        from cinescale_post.cascade.streams import stream_generator, stream_randn

        # Each tensor from its own stream (issue 12): one seed for every draw made
        # the re-noise repeat the base noise; stage 0's keeps the plain seed (reference).
        base = None
        renoise: list[Any] = []
        for s in stages:
            shape = self.latent_shape(s.size, frames=frames)
            eps = stream_randn(seed, s.index, "noise" if s.base else "renoise", shape)
            if s.base:
                base = eps.to(self.dtype)
                renoise.append(None)
            else:
                renoise.append(eps.to(self.dtype))
        return RandomSources(generator=stream_generator(seed, 0, "posterior"), jitter=None,
                             posterior=opts.posterior, renoise=renoise, base_noise=base)

    def run_cascade(self, stages, cond, rng, *, init=None, frames: int = 1, keep: str = "last",
                    progress: Callable[[float], None] | None = None):
        """The core :func:`~cinescale_post.cascade.loop.run_ladder` on this
        backend (``frames``: latent frames); each result's ``info`` also records
        the stage's shift, NTK factors and attention scale."""
        from cinescale_post.cascade.loop import run_ladder

        results = run_ladder(self, stages, cond, rng, init=init, frames=int(frames), keep=keep, progress=progress)
        by_index = {s.index: s for s in stages}
        for res in results:
            ws = wan_stage(by_index[res.stage].spec)
            res.info.update(shift=ws.shift, ntk=list(ws.ntk), attention_scale=ws.attention_scale)
        return results

    def render(self, job: WindowJob):
        """Video-to-video refine of one window: encode the (padded 4k+1) frames,
        upsample the latent to each stage's size, re-noise at the restart
        index, denoise; padded frames are dropped."""
        import torch

        from cinescale_post.cascade.run import refine_video

        self._need()
        plan = self.plan
        frames = [f.rgb for f in job.frames]
        if not frames:
            return []
        n = len(frames)
        total = padded_length(n, self.frame_rule)
        frames = frames + [frames[-1]] * (total - n)
        info = self.model_info
        h0, w0 = frames[0].shape[:2]
        src_size = (_snap(w0, info.size_multiple), _snap(h0, info.size_multiple))
        stages = self.ladder("render", tuple(job.size))
        guidance = max(s.spec.guidance for s in stages)
        cond = self.condition(getattr(plan, "prompt", "") or "", getattr(plan, "negative_prompt", "") or "",
                              guidance=guidance)
        seed = job.seed_for(job.frames[0].number)
        f_lat = latent_frames(total, info.temporal_factor)
        with _oom_guard(), torch.inference_mode():
            px = video_to_pixels(frames, src_size, self.device, torch.float32)
            rng = self.random_sources(seed, stages, f_lat)
            out = pixels_to_frames(refine_video(self, px, stages, cond, rng, progress=job.progress),
                                   tuple(job.size), self.options.fit)
        return out[:n]

    def generate(self, plan, seed_for) -> list:
        """Text (or image, ``backend_options.image``) to video: ``num_frames``
        frames, (H, W, 3) float32 in [0, 1] at the output size."""
        import torch

        if self.pipe is None or self.plan is not plan:
            self.load(plan)
        opts = self.options
        out = (plan.output.width, plan.output.height)
        stages = self.ladder("generate", out)
        guidance = max(s.spec.guidance for s in stages)
        image = None
        if opts.image:
            if "i2v" not in self.variant.tasks:
                raise PlanError(f"backend_options.image is set but {self.variant.name} is not an image-to-video model",
                                fix="use a Wan I2V model, or remove the image for text-to-video")
            image = _read_image(opts.image)
        elif "t2v" not in self.variant.tasks:
            raise PlanError(f"{self.variant.name} needs a first frame", fix="set backend_options.image")
        cond = self.condition(plan.prompt or "", plan.negative_prompt or "", guidance=guidance, image=image)
        numbers = tuple(getattr(plan, "frames", ()) or (1001,))
        f_lat = latent_frames(opts.num_frames, self.model_info.temporal_factor)
        with _oom_guard(), torch.inference_mode():
            rng = self.random_sources(seed_for(numbers[0]), stages, f_lat)
            res = self.run_cascade(stages, cond, rng, frames=f_lat)[-1]
            return pixels_to_frames(self.decode(res.latent), out, opts.fit)[:opts.num_frames]

    # ------------------------------------------------------------ memory (issue 6)

    def estimate_memory(self, plan) -> dict:
        """Peak device memory per stage from the model folder's configs (no
        weights loaded; ``cinescale_post.memory_model``) and the VAE tile,
        window (DiT frames) and offload setting that fit ``plan.device``."""
        import json

        from cinescale_post import memory_model as mm

        opts = WanOptions.from_dict(dict(plan.backend_options))
        folder = Path(opts.config or plan.model or "")
        tr_dir = folder / "transformer"
        if not folder.is_dir() or not (tr_dir / "config.json").is_file():
            return {"available": False, "reason": f"no diffusers Wan configs at {str(folder) or '(no model)'} "
                    "(set backend_options.config for a single .safetensors file)"}
        elem = mm.dtype_bytes(plan.dtype)
        vae_dt = plan.dtype if in_model_dtype(opts.vae_dtype, plan.device) else "float32"
        tcfg = json.loads((tr_dir / "config.json").read_text())
        vcfg = json.loads((folder / "vae" / "config.json").read_text())
        names = ["transformer", "transformer_2", "vae", "text_encoder", "image_encoder"]
        comps = [c for c in (mm.component_from_folder(n, folder / n, vae_dt if n == "vae" else plan.dtype)
                             for n in names) if c is not None]
        if plan.model and Path(plan.model).is_file():  # single transformer file: its headers
            n, big = mm.safetensors_params(plan.model)
            comps = [mm.Component("transformer", n * elem, big * elem)] + [c for c in comps if c.name != "transformer"]
        lf = int(vcfg.get("scale_factor_spatial", 8) or 8)
        tf = int(vcfg.get("scale_factor_temporal", 4) or 4)
        patch = tuple(tcfg["patch_size"])
        heads, hd = int(tcfg["num_attention_heads"]), int(tcfg["attention_head_dim"])
        dim = heads * hd
        base = (832, 480) if dim <= 1536 else (1280, 720)
        out = (int(plan.output.width), int(plan.output.height))
        specs, _ = parse_wan_stages(list(plan.stages))
        mode = "render" if getattr(plan, "mode", "render") == "render" else "generate"
        ladder = resolve_ladder(specs, mode=mode, base_size=base, output=out, multiple=lf * int(patch[-1]))
        if mode == "render":
            win = getattr(plan, "window", None)
            size = win.get("size") if isinstance(win, dict) else getattr(win, "size", 1)
            full = padded_length(int(size or 1))
        else:
            full = int(opts.num_frames)
        windows = sorted({full} | {n for n in (41, 21, 9, 5) if n < full}, reverse=True) if mode == "render" \
            else [full]
        cp = opts.context_parallel or {}
        world = max(1, int(cp.get("ulysses", 1) or 1)) * max(1, int(cp.get("ring", 1) or 1))
        batch = 2 if opts.cfg_batch else 1
        kernel = "efficient"
        base_dim = int(vcfg.get("decoder_base_dim") or vcfg.get("base_dim", 96))
        chans = [base_dim * int(m) for m in vcfg.get("dim_mult", [1, 2, 4, 4])]
        stages = []
        for i, st in enumerate(ladder):
            w, h = st.size

            def denoise(window, _s=(w, h)):
                n = mm.dit_tokens(window, _s, latent_factor=lf, temporal_factor=tf, patch=patch)
                return mm.dit_activation_bytes(n, dim, heads, int(tcfg["ffn_dim"]), batch, elem,
                                               text_tokens=opts.max_sequence_length, kernel=kernel, world=world)

            def vae(tile, window, _w=w, _h=h):
                t = (_w, _h) if tile is None else (min(tile, _w), min(tile, _h))
                return mm.vae_bytes(t, chans, mm.dtype_bytes(vae_dt), frames=tf,
                                    out_size=None, latent_factor=lf, kernel=kernel) + 2 * 3 * _w * _h * window * 4

            stages.append(mm.StageDemand(f"stage {i}", (w, h), denoise, vae, {
                "tokens_full_window": mm.dit_tokens(full, (w, h), latent_factor=lf, temporal_factor=tf,
                                                    patch=patch), "cfg_batch": batch, "context_parallel": world}))
        t0 = int(opts.vae_tile[0])
        tiles = ([None] if not opts.vae_tiling else []) + [t for t in (t0, t0 * 3 // 4, t0 // 2) if t >= 64]
        offloads = ("none",) if str(plan.device).startswith("cpu") else ("none", "model")
        free, source = mm.free_memory(plan.device)
        res = mm.plan_memory(comps, stages, free, denoisers=("transformer", "transformer_2"), tiles=tiles or [None],
                             windows=windows, offloads=offloads)
        res.update(available=True, device=str(plan.device), dtype=plan.dtype, vae_dtype=vae_dt, free_source=source,
                   attention_kernel=kernel,
                   note="window = DiT frames per render window (4k+1); offload 'sequential' is not offered by "
                        "this backend")
        return res

    def apply_memory_choice(self, choice: dict) -> str | None:
        """Adopt the planner's setting at load (``plan.memory["choice"]``):
        VAE tile size and model offload (the window size is already in the
        plan); describe what changed, None if nothing."""
        import dataclasses

        pipe = self._need()
        done = []
        tile = choice.get("vae_tile")
        if tile:
            t = int(tile)
            vae = pipe.vae
            before = (bool(getattr(vae, "use_tiling", False)), getattr(vae, "tile_sample_min_height", None),
                      getattr(vae, "tile_sample_min_width", None))
            vae.enable_tiling(tile_sample_min_height=t, tile_sample_min_width=t,
                              tile_sample_stride_height=t * 3 // 4, tile_sample_stride_width=t * 3 // 4)
            self.options = dataclasses.replace(self.options, vae_tiling=True)
            if before != (True, t, t):
                done.append(f"VAE tiles of {t}x{t} px")
        if choice.get("offload") == "model" and self.options.offload == "none" and self.device.type != "cpu":
            self.options = dataclasses.replace(self.options, offload="model")
            for name in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
                mod = getattr(pipe, name, None)
                if mod is not None:
                    mod.to("cpu")
            done.append("model CPU offload")
        return ", ".join(done) or None

    def reduce_memory(self) -> str | None:
        """Next cheaper live setting: VAE tiling on, then VAE tiles of 3/4 and
        1/2 of the preset's (stride 3/4 of the tile, never under 64 px), then
        ``offload = "model"`` (accelerator devices only); None after that."""
        import dataclasses

        pipe = self._need()
        vae = pipe.vae
        opts = self.options
        if not getattr(vae, "use_tiling", False):
            t = opts.vae_tile
            vae.enable_tiling(tile_sample_min_height=t[0], tile_sample_min_width=t[1],
                              tile_sample_stride_height=opts.vae_stride[0], tile_sample_stride_width=opts.vae_stride[1])
            self.options = dataclasses.replace(opts, vae_tiling=True)
            return f"VAE tiling on ({t[0]}x{t[1]} px tiles)"
        first = opts.vae_tile
        cur = (int(vae.tile_sample_min_height), int(vae.tile_sample_min_width))
        for frac in ((3, 4), (1, 2)):
            nxt = (first[0] * frac[0] // frac[1], first[1] * frac[0] // frac[1])
            if nxt[0] < cur[0] and min(nxt) >= 64:
                vae.enable_tiling(tile_sample_min_height=nxt[0], tile_sample_min_width=nxt[1],
                                  tile_sample_stride_height=nxt[0] * 3 // 4, tile_sample_stride_width=nxt[1] * 3 // 4)
                return f"VAE tiles of {nxt[0]}x{nxt[1]} px"
        if opts.offload == "none" and self.device.type != "cpu":
            self.options = dataclasses.replace(opts, offload="model")
            for name in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
                mod = getattr(pipe, name, None)
                if mod is not None:
                    mod.to("cpu")
            return "model CPU offload (each component on the device only while used)"
        return None

    def smoke(self, device: str = "cpu") -> dict:
        """Tiny random Wan model in memory, two-stage cascade 32 -> 64 px over
        9 frames (NTK-RoPE, temperature, shift 7 -> 11). Proves wiring and
        arithmetic on ``device``, not picture quality."""
        import torch

        from cinescale_post.testing_wan import tiny_wan_pipeline

        t0 = time.perf_counter()
        pipe = tiny_wan_pipeline(0)
        t_build = time.perf_counter() - t0
        stages = ({"size": [32, 32], "steps": 4, "shift": 7.0},
                  {"size": [64, 64], "steps": 4, "restart_step": 1, "shift": 11.0, "attention_scale": 1.5})
        opts = WanOptions(max_sequence_length=32, num_frames=9)
        self.attach(pipe, device=device, dtype=torch.float32, options=opts, stages=stages)
        lad = self.ladder("generate", (64, 64))
        cond = self.condition("a brown owl in the snow", "blurry", guidance=5.0)
        t1 = time.perf_counter()
        with torch.inference_mode():
            res = self.run_cascade(lad, cond, self.random_sources(123, lad, 3), frames=3, keep="all")
            vids = [pixels_to_frames(self.decode(r.latent), r.size, "crop") for r in res]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t_run = time.perf_counter() - t1
        import numpy as np

        ok = all(np.isfinite(f).all() for v in vids for f in v)
        variant = self.variant.name
        self.unload()
        return {"backend": self.id, "device": str(device), "ok": bool(ok), "variant": variant,
                "stages": [{"size": list(s.size), "steps": s.spec.steps, "restart_index": s.restart_index}
                           for s in lad],
                "output_shapes": [[len(v), *v[0].shape] for v in vids],
                "seconds": {"build": round(t_build, 3), "cascade": round(t_run, 3)},
                "note": "tiny random-weight model: this checks wiring and arithmetic, not picture quality"}


def _cat_text(a, b):
    import torch

    if a.shape[1] != b.shape[1]:
        raise ValueError("cfg_batch needs prompt and negative embeddings of the same length")
    return torch.cat([a, b])


def _snap(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def video_to_pixels(frames: Sequence[Any], size: tuple[int, int], device: Any, dtype: Any):
    """list of (H, W, 3) float in [0, 1] -> (1, 3, F, h, w) in [-1, 1] at
    ``size`` = (w, h) (bicubic when the size differs)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    arr = np.stack([np.asarray(f, dtype=np.float32)[..., :3] for f in frames])  # (F, H, W, 3)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2) * 2.0 - 1.0  # (F, 3, H, W)
    if (x.shape[-1], x.shape[-2]) != tuple(size):
        x = F.interpolate(x, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    return x.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=dtype)


def pixels_to_frames(px, size: tuple[int, int], fit: str = "crop") -> list:
    """(1, 3, F, H, W) in [-1, 1] -> F frames (h, w, 3) float32 in [0, 1] at
    ``size`` = (w, h): "crop" scales to cover then centre-crops (1920x1088 ->
    1920x1080 drops 4 rows top and bottom), "resize" stretches."""
    import numpy as np
    import torch.nn.functional as F

    x = px[0].float().permute(1, 0, 2, 3)  # (F, 3, H, W)
    w, h = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    if (W, H) != (w, h):
        if fit == "resize":
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        else:
            s = max(w / W, h / H)
            if abs(s - 1.0) > 1e-9:
                x = F.interpolate(x, size=(max(h, round(H * s)), max(w, round(W * s))), mode="bicubic",
                                  align_corners=False)
            H2, W2 = x.shape[-2:]
            top, left = (H2 - h) // 2, (W2 - w) // 2
            x = x[..., top:top + h, left:left + w]
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    return [np.ascontiguousarray(f.permute(1, 2, 0).cpu().numpy(), dtype=np.float32) for f in x]


def _read_image(path: str):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


class _oom_guard:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and "OutOfMemoryError" in exc_type.__name__ and exc_type is not OutOfMemoryError:
            raise OutOfMemoryError(f"out of GPU memory: {exc}",
                                   fix="use dtype bfloat16, backend_options.offload = \"model\", smaller "
                                       "vae_tile, fewer frames per window, or a smaller last stage") from exc
        return False


__all__ = ["WanBackend", "WanCond", "latent_frames", "padded_length", "pixels_to_frames", "video_to_pixels"]
