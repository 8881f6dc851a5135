"""The SDXL backend: a :class:`~cinescale_post.cascade.DiffusionBackend` on
diffusers' SDXL components, driven by the core cascade loop.

Lifecycle: ``validate`` (plan time, no torch) -> ``load(plan)`` -> ``render(job)``
per window / ``generate(plan, seed_for)`` -> ``unload()``. ``smoke(device)``
builds tiny random models in memory and runs a two-stage cascade.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from cinescale_post.devices import empty_cache
from cinescale_post.cascade.protocol import DiffusionBackend, ModelInfo, PatchPoints
from cinescale_post.cascade.stages import StageSpec, parse_stages, resolve_ladder
from cinescale_post.errors import OutOfMemoryError, PlanError, WeightsError
from cinescale_post.interfaces import FrameRule, WindowJob

log = logging.getLogger(__name__)

# FreeScale's restrained-dilation list (ALGORITHM.md section 2.1) and the
# self-attention layers of every BasicTransformerBlock (section 3.1).
SDXL_DILATED_CONVS = (
    "down_blocks.1.downsamplers.0.conv",
    "down_blocks.2.resnets.0.conv1", "down_blocks.2.resnets.0.conv2",
    "down_blocks.2.resnets.1.conv1", "down_blocks.2.resnets.1.conv2",
    "mid_block.resnets.0.conv1", "mid_block.resnets.0.conv2",
    "mid_block.resnets.1.conv1", "mid_block.resnets.1.conv2",
)
SDXL_SELF_ATTENTION = ("*transformer_blocks.*.attn1.processor",)
DTYPES = ("float32", "float16", "bfloat16")
NOISE_MODES = ("shot", "frame", "flow")
FLOW_METHODS = ("dis", "farneback")  # = cinescale_post.ops.temporal.FLOW_METHODS (no torch at plan time)
LOWPASS_KINDS = ("gaussian", "box")  # = cinescale_post.ops.temporal.LOWPASS_KINDS
WARP_MODES = ("bilinear", "nearest")  # = cinescale_post.ops.temporal.WARP_MODES
CROSS_FRAME_FUSION = "cross-frame"
FREEU_DEFAULT = {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4}


def load_detail_mask(path: str | None, soft: bool = False):
    """The detail mask of ``path`` as a ``DetailMask`` over a (1, 1, H, W)
    float tensor, or None. Reference (FreeScale imgen): any non-zero pixel is
    detail, so a grey 0.3 band counts; ``soft``: the grey level (mean RGB) is
    the per-pixel weight between ``cosine_scale`` and ``cosine_scale_bg``."""
    if not path:
        return None
    import numpy as np
    import torch

    from cinescale_post.cascade.schedule import DetailMask
    from cinescale_post.media.sequence_reader import read_image

    rgb = np.asarray(read_image(path).rgb, np.float32)
    values = rgb.mean(axis=-1) if soft else (np.abs(rgb).max(axis=-1) != 0).astype(np.float32)
    return DetailMask(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None], soft=soft)


@dataclass(frozen=True)
class SDXLOptions:
    """``[backend_options]`` of an SDXL preset (defaults: FreeScale reference).

    freeu: true (b1=1.1, b2=1.2, s1=0.6, s2=0.4), false, or a table with those keys.
    vae_tiling: tiled VAE encode/decode above the base size (reference: always on).
    vae_fp32: "auto" (fp32 when the VAE config says force_upcast and dtype is fp16), true, false.
    noise: re-noise field of each frame (issue 7; BENCHMARKS.md "Temporal consistency"):
        "shot" (default): one field for every frame of the shot (static content stays still);
        "frame": per-frame seeds (added detail changes every frame);
        "flow": the shot's field carried along the source's optical flow from a key frame
        (every ``key_every`` source frames) to each frame, re-normalised to unit Gaussian,
        fresh noise where the flow is occluded. A frame's field depends only on (seed, its key
        frame, the source between them): give windows that contain the key frame (window.size a
        multiple of key_every, or --handles >= key_every - 1), else it is anchored at the
        window's first frame (deterministic, logged).
    key_every: key-frame grid (source frames) of noise = "flow" and cross-frame attention (8).
    flow: optical flow of noise = "flow": "dis" (OpenCV DIS, medium preset) or "farneback".
    flow_warp: how noise = "flow" resamples the key field: "bilinear" (four cells, weights
        renormalised so every cell stays N(0, 1)) or "nearest" (the nearest cell's value).
    anchor_lowfreq: 0..1, low-frequency anchoring of ``render`` (not the reference; issue 7): the
        render's low frequencies replaced by the upsampled source's with this strength (as the
        wavelet/AdaIN "colour fix" of diffusion super-resolution); stops colour drift. Default 1.0,
        measured (BENCHMARKS.md "Temporal consistency"); 0 = off (FreeScale reference).
    anchor_sigma: its low-pass standard deviation in *source* pixels (scaled to the output);
        default 1.0: the source's structure up to about a quarter of its sampling rate, nothing
        the render adds above the source's resolution.
    anchor_filter: "gaussian" or "box" (a box of the same standard deviation).
    cross_frame: true: every frame is denoised in a batch with its key frame, whose
        self-attention keys/values it also attends to (the ``cross-frame`` fusion, under the
        stage's scale fusion; about twice the cost). A stage may instead name
        ``fusion = "cross-frame"`` (replacing its scale fusion).
    shot_frame: frame number whose seed is the shot's (default: the source's first frame).
    posterior: "sample" (reference) or "mean" (controlled mode).
    jitter: random window jitter of scale fusion (reference: on).
    config: diffusers SDXL folder giving the configs for a single .safetensors file.
    dilate_convs: module names to dilate (default: FreeScale's nine SDXL convolutions).
    keep_stages: generate returns every stage's image, not only the last.
    detail_mask: an image file (PNG/TIFF/EXR, any size) for the per-pixel variant of the cosine
        blend (ALGORITHM.md, detail control): where the mask is non-zero (reference: any value
        above black, a grey 0.3 band included) upscaled stages use the stage's ``cosine_scale``,
        elsewhere ``cosine_scale_bg`` (default 1.0), so regions can keep more or less of the
        upsampled structure. One mask for the shot.
    detail_mask_soft: false (reference, binary); true: the mask's grey level (mean RGB, 0..1)
        weighs the two exponents, ``m * cosine_scale + (1 - m) * cosine_scale_bg``.
    """

    freeu: Any = True
    vae_tiling: bool = True
    vae_fp32: Any = "auto"
    noise: str = "shot"
    key_every: int = 8
    flow: str = "dis"
    flow_warp: str = "bilinear"
    anchor_lowfreq: float = 1.0
    anchor_sigma: float = 1.0
    anchor_filter: str = "gaussian"
    cross_frame: bool = False
    shot_frame: int | None = None
    posterior: str = "sample"
    jitter: bool = True
    config: str | None = None
    dilate_convs: tuple[str, ...] = SDXL_DILATED_CONVS
    keep_stages: bool = False
    detail_mask: str | None = None
    detail_mask_soft: bool = False

    @classmethod
    def from_dict(cls, d: dict, source: Any = None) -> "SDXLOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PlanError(f"backend_options: unknown key(s) {', '.join(unknown)} for backend 'sdxl'",
                            fix=f"use only: {', '.join(sorted(known))}")
        v = dict(d)
        f = v.get("freeu", True)
        if f is True:
            v["freeu"] = dict(FREEU_DEFAULT)
        elif f is False or f is None:
            v["freeu"] = None
        elif isinstance(f, dict):
            bad = sorted(set(f) - set(FREEU_DEFAULT))
            if bad or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in f.values()):
                raise PlanError(f"backend_options.freeu = {f!r}", fix="use true, false or {b1, b2, s1, s2} numbers")
            v["freeu"] = {**FREEU_DEFAULT, **{k: float(x) for k, x in f.items()}}
        else:
            raise PlanError(f"backend_options.freeu = {f!r}", fix="use true, false or a table {b1, b2, s1, s2}")
        for k in ("vae_tiling", "jitter", "keep_stages", "cross_frame", "detail_mask_soft"):
            if k in v and not isinstance(v[k], bool):
                raise PlanError(f"backend_options.{k} = {v[k]!r} must be true or false")
        if v.get("vae_fp32", "auto") != "auto" and not isinstance(v.get("vae_fp32"), bool):
            raise PlanError(f"backend_options.vae_fp32 = {v['vae_fp32']!r}", fix='use "auto", true or false')
        if v.get("noise", "shot") not in NOISE_MODES:
            raise PlanError(f"backend_options.noise = {v['noise']!r} is not one of {', '.join(NOISE_MODES)}",
                            fix='use "shot" (default), "frame" or "flow"')
        if v.get("flow", "dis") not in FLOW_METHODS:
            raise PlanError(f"backend_options.flow = {v['flow']!r} is not one of {', '.join(FLOW_METHODS)}",
                            fix='use "dis" or "farneback"')
        if v.get("flow_warp", "bilinear") not in WARP_MODES:
            raise PlanError(f"backend_options.flow_warp = {v['flow_warp']!r} is not one of {', '.join(WARP_MODES)}",
                            fix='use "bilinear" or "nearest"')
        if v.get("anchor_filter", "gaussian") not in LOWPASS_KINDS:
            raise PlanError(f"backend_options.anchor_filter = {v['anchor_filter']!r} is not one of "
                            f"{', '.join(LOWPASS_KINDS)}", fix='use "gaussian" or "box"')
        ke = v.get("key_every", 8)
        if not isinstance(ke, int) or isinstance(ke, bool) or not 1 <= ke <= 100000:
            raise PlanError(f"backend_options.key_every = {ke!r} must be an integer in 1..100000",
                            fix="give the key-frame spacing in source frames, e.g. 8")
        for k, lo, hi, lo_open in (("anchor_lowfreq", 0.0, 1.0, False), ("anchor_sigma", 0.0, 1000.0, True)):
            if k not in v:
                continue
            x = v[k]
            if (not isinstance(x, (int, float)) or isinstance(x, bool) or math.isnan(x) or x > hi
                    or (x <= lo if lo_open else x < lo)):
                rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
                raise PlanError(f"backend_options.{k} = {x!r} must be a number in {rng}",
                                fix=("strength of low-frequency anchoring, 0 = off" if k == "anchor_lowfreq"
                                     else "low-pass standard deviation in source pixels, e.g. 1.0"))
            v[k] = float(x)
        if v.get("posterior", "sample") not in ("sample", "mean"):
            raise PlanError(f"backend_options.posterior = {v['posterior']!r}", fix='use "sample" or "mean"')
        if v.get("shot_frame") is None:
            v["shot_frame"] = source.first_frame if (source is not None and source.frame_numbers) else None
        elif not isinstance(v["shot_frame"], int) or isinstance(v["shot_frame"], bool):
            raise PlanError(f"backend_options.shot_frame = {v['shot_frame']!r} must be a frame number")
        if v.get("config") is not None and not isinstance(v["config"], str):
            raise PlanError(f"backend_options.config = {v['config']!r} must be a folder path")
        dm = v.get("detail_mask")
        if dm is not None and (not isinstance(dm, str) or not Path(dm).is_file()):
            raise PlanError(f"backend_options.detail_mask = {dm!r} is not an image file",
                            fix="give the path of a PNG/TIFF/EXR mask (bright = detail region)")
        if "dilate_convs" in v:
            dc = v["dilate_convs"]
            if not isinstance(dc, (list, tuple)) or not all(isinstance(x, str) and x for x in dc):
                raise PlanError(f"backend_options.dilate_convs = {dc!r}", fix="give a list of module names")
            v["dilate_convs"] = tuple(dc)
        return cls(**v)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilate_convs"] = list(self.dilate_convs)
        return d


@dataclass
class SDXLCond:
    prompt_embeds: Any  # (2B or B, 77, D)
    text_embeds: Any  # pooled
    time_ids: Any
    cfg: bool


class SDXLBackend(DiffusionBackend):
    id = "sdxl"
    family = "unet"
    capabilities = frozenset({"v2v", "t2i"})
    frame_rule = FrameRule()
    temporal = False
    description = "SDXL-family UNet (FreeScale: self-cascade, restrained dilation, scale fusion, FreeU)"

    def __init__(self) -> None:
        self.pipe: Any = None
        self.plan: Any = None
        self.options = SDXLOptions.from_dict({})
        self.specs: list[StageSpec] = []
        self.device: Any = "cpu"
        self.dtype: Any = None
        self.vae_dtype: Any = None
        self._scheduler: Any = None
        self._cond_cache: dict = {}
        #: (frames per group, anchor index) while a batch of frames runs with
        #: cross-frame attention (read by the ``cross-frame`` fusion), else None.
        self.frame_group: tuple[int, int] | None = None
        self._warned_key = False

    # ------------------------------------------------------------ plan time

    def validate(self, *, stages, options, size, source):
        specs = parse_stages(stages)
        opts = SDXLOptions.from_dict(dict(options), source)
        return tuple(s.to_dict() for s in specs), opts.to_dict()

    def weight_files(self, plan) -> list[str]:
        if not plan.model:
            return []
        p = Path(plan.model)
        if p.is_file():
            return [str(p)]
        return sorted(str(f) for f in p.rglob("*.safetensors"))

    # ------------------------------------------------------------ loading

    def load(self, plan) -> None:
        import torch

        self.plan = plan
        self.options = SDXLOptions.from_dict(dict(plan.backend_options))
        self.specs = parse_stages(list(plan.stages))
        if plan.dtype not in DTYPES:
            raise PlanError(f"dtype {plan.dtype!r}", fix=f"use one of: {', '.join(DTYPES)}")
        dtype = getattr(torch, plan.dtype)
        pipe = load_pipeline(plan.model, dtype, config=self.options.config)
        self.attach(pipe, device=plan.device, dtype=dtype, options=self.options)
        self.mask = load_detail_mask(self.options.detail_mask, self.options.detail_mask_soft)

    def attach(self, pipe: Any, *, device: Any = "cpu", dtype: Any = None, options: SDXLOptions | None = None):
        """Use an in-memory ``StableDiffusionXLPipeline`` (tests, smoke)."""
        import torch

        self.options = options or self.options
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
        self._cond_cache = {}
        self._warned_key = False
        return self

    def unload(self) -> None:
        self.pipe = None
        self._cond_cache = {}
        empty_cache()

    def _need(self):
        if self.pipe is None:
            raise RuntimeError("the sdxl backend is not loaded; call load(plan) first")
        return self.pipe

    # ------------------------------------------------------------ protocol

    @property
    def model_info(self) -> ModelInfo:
        pipe = self._need()
        f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        base = int(pipe.unet.config.sample_size) * f
        # the diffusers UNet takes any latent size (it forwards upsample sizes), so
        # stages only snap to whole latent cells: 3840x2160 stays 3840x2160.
        return ModelInfo(base_size=(base, base), latent_factor=f,
                         latent_channels=int(pipe.unet.config.in_channels), size_multiple=f)

    @property
    def patch_points(self) -> PatchPoints:
        pipe = self._need()
        boc = tuple(pipe.unet.config.block_out_channels)
        return PatchPoints(dilate_convs=tuple(self.options.dilate_convs), fusion_attention=SDXL_SELF_ATTENTION,
                           freeu=len(boc) >= 2)  # keyed on the decoder stage (ops.freeu)

    @property
    def denoiser(self):
        return self._need().unet

    def make_scheduler(self):
        self._need()
        return copy.deepcopy(self._scheduler)

    def encode(self, pixels, *, generator=None, sample=True):
        vae = self._need().vae
        x = pixels.to(device=self.device, dtype=vae.dtype)
        dist = vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        cfg = vae.config
        if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
            import torch

            mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(z.device, z.dtype)
            std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(z.device, z.dtype)
            return ((z - mean) * cfg.scaling_factor / std).to(self.dtype)
        return z.to(self.dtype) * cfg.scaling_factor

    def decode(self, latents):
        vae = self._need().vae
        cfg = vae.config
        z = latents.to(device=self.device, dtype=vae.dtype)
        if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
            import torch

            mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(z.device, z.dtype)
            std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(z.device, z.dtype)
            z = z * std / cfg.scaling_factor + mean
        else:
            z = z / cfg.scaling_factor
        return vae.decode(z, return_dict=False)[0]

    def condition(self, prompt, negative_prompt="", *, size, guidance, prompt_embeds=None):
        """SDXL text conditioning plus micro-conditioning for (width, height)
        ``size`` (reference: the base stage's size, reused by every stage).
        ``prompt_embeds``: optional (embeds, pooled[, neg_embeds, neg_pooled]) for
        models saved without text encoders."""
        import torch

        pipe = self._need()
        cfg = guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
        key = (prompt, negative_prompt, tuple(size), cfg, id(prompt_embeds))
        if key in self._cond_cache:
            return self._cond_cache[key]
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
        proj = (int(pooled.shape[-1]) if pipe.text_encoder_2 is None
                else pipe.text_encoder_2.config.projection_dim)
        w, h = size
        time_ids = pipe._get_add_time_ids((h, w), (0, 0), (h, w), dtype=pe.dtype,
                                          text_encoder_projection_dim=proj)
        if cfg:
            pe = torch.cat([npe, pe])
            pooled = torch.cat([npooled, pooled])
            time_ids = torch.cat([time_ids, time_ids])
        cond = SDXLCond(pe.to(self.device, self.dtype), pooled.to(self.device, self.dtype),
                        time_ids.to(self.device), cfg)
        self._cond_cache[key] = cond
        return cond

    def predict(self, x, t, cond: SDXLCond, *, guidance):
        import torch

        unet = self._need().unet
        pe, te, ti = cond.prompt_embeds, cond.text_embeds, cond.time_ids
        use_cfg = cond.cfg and guidance > 1.0
        if cond.cfg and not use_cfg:  # conditional half only
            pe, te, ti = pe[pe.shape[0] // 2:], te[te.shape[0] // 2:], ti[ti.shape[0] // 2:]
        x_in = torch.cat([x, x]) if use_cfg else x
        rows = x_in.shape[0]
        if pe.shape[0] != rows:  # several frames in one batch: [uncond * B, cond * B]
            reps = rows // pe.shape[0]
            pe, te, ti = (t.repeat_interleave(reps, dim=0) for t in (pe, te, ti))
        with torch.no_grad():
            out = unet(x_in, t, encoder_hidden_states=pe, added_cond_kwargs={"text_embeds": te, "time_ids": ti},
                       return_dict=False)[0]
        if use_cfg:
            u, c = out.chunk(2)
            out = u + guidance * (c - u)
        return out

    # ------------------------------------------------------------ running

    def freeu_spec(self):
        if not self.options.freeu:
            return None
        from cinescale_post.ops.freeu import FreeUSpec

        return FreeUSpec(**self.options.freeu) if self.patch_points.freeu else None

    def ladder(self, mode: str, output: tuple[int, int], specs: Sequence[StageSpec] | None = None):
        info = self.model_info
        return resolve_ladder(self.specs if specs is None else specs, mode=mode, base_size=info.base_size,
                              output=output, multiple=info.size_multiple)

    def render(self, job: WindowJob):
        """Refine every frame of ``job`` (context included) at ``job.size``.

        ``noise = "shot"``/``"frame"`` without cross-frame attention run the
        frames one by one with seeded random sources (the reference path);
        ``"flow"`` and cross-frame attention build every frame's re-noise
        fields explicitly (:meth:`_temporal_fields`); low-frequency anchoring
        is applied to the finished pictures.
        """
        import torch

        from cinescale_post.cascade.loop import RandomSources
        from cinescale_post.cascade.run import refine_frames

        self._need()
        plan = self.plan
        stages = self.ladder("render", tuple(job.size))
        frames = [f.rgb for f in job.frames]
        if not frames:
            return []
        h0, w0 = frames[0].shape[:2]
        guidance = max(s.spec.guidance for s in stages)
        cond = self.condition(getattr(plan, "prompt", "") or "", getattr(plan, "negative_prompt", "") or "",
                              size=(w0, h0), guidance=guidance)
        opts = self.options
        shot_key = self._shot_key(job)
        cross = opts.cross_frame or any(s.fusion == CROSS_FRAME_FUSION for s in stages)

        def rng_for(i: int) -> RandomSources:
            if opts.noise == "shot":
                key = shot_key
            else:
                key = job.frames[i].number
            return RandomSources.from_seed(job.seed_for(key), jitter=opts.jitter, posterior=opts.posterior)

        with _oom_guard():
            with torch.inference_mode():
                if opts.noise in ("shot", "frame") and not cross:
                    outs = refine_frames(self, frames, stages, cond, rng_for, out_size=tuple(job.size),
                                         freeu=self.freeu_spec(), progress=job.progress,
                                         mask=getattr(self, "mask", None))
                else:
                    outs = self._render_temporal(job, stages, cond, shot_key, cross)
                if opts.anchor_lowfreq > 0.0:
                    outs = self.anchor_outputs(outs, frames)
        return outs

    def _shot_key(self, job: WindowJob) -> int:
        key = self.options.shot_frame
        if key is None:  # no source at plan time: the first frame of the render
            selected = tuple(getattr(self.plan, "frames", ()) or ())
            key = selected[0] if selected else job.frames[0].number
        return key

    def lookbehind_frames(self, options: dict | None = None, stages: Sequence[dict] = ()) -> int:
        """Source frames before a window that :meth:`render` would like to
        *read* (not render) so every frame finds its key frame: ``key_every -
        1`` with noise = "flow" or cross-frame attention, else 0. Passed as
        ``job.lookbehind`` (read-only frames, in source order) by an
        orchestrator that supports it; without them a window that starts off
        the key-frame grid anchors its first frames at its own first frame."""
        o = self.options if options is None else SDXLOptions.from_dict(dict(options))
        cross = o.cross_frame or any(dict(s).get("fusion") == CROSS_FRAME_FUSION for s in stages)
        return o.key_every - 1 if (o.noise == "flow" or cross) else 0

    def _temporal_fields(self, frames: Sequence, seed_for, stages, shot_key: int,
                         cross: bool = False) -> tuple[list, list[int]]:
        """Re-noise fields of every frame of ``frames`` (``job.lookbehind`` +
        ``job.frames``), one (1, C, h, w) tensor per stage, and the position
        of each frame's key frame in ``frames``.

        Fields are drawn from CPU generators seeded with
        ``derive_seed(seed_for(n), "renoise")``: ``n`` = the shot frame
        ("shot" and "flow") or the frame number ("frame"). ``"flow"`` warps the
        shot's fields from the key frame along the source flow
        (``ops.temporal``), with the frame's own fields where the flow is
        occluded. Key frames (also the anchors of cross-frame attention) come
        from :func:`~cinescale_post.ops.temporal.key_frames` on the source
        indices present.
        """
        from cinescale_post.ops.temporal import chain_flows, derive_seed, flow_noise, key_frames, noise_fields

        opts = self.options
        shapes = [self.latent_shape(s.size) for s in stages]
        idx = [int(f.index) for f in frames]
        first: dict[int, int] = {}
        for p, i in enumerate(idx):
            first.setdefault(i, p)
        keys = key_frames(idx, opts.key_every)
        off_grid = sorted({i for i, (_, on) in keys.items() if not on})
        if off_grid and (opts.noise == "flow" or cross) and not self._warned_key:
            self._warned_key = True  # once per render: every window of a badly laid-out plan would repeat it
            log.warning("frames %s: their key frames (every %d source frames) are not in this window, so they "
                        "are anchored at the window's first frame; fix: window.size a multiple of key_every, "
                        "or --handles %d", [frames[first[i]].number for i in off_grid], opts.key_every,
                        opts.key_every - 1)
        key_pos = [first[keys[i][0]] for i in idx]

        def fields_of(number: int, purpose: str = "renoise") -> list:
            return [t.to(self.device, self.dtype) for t in noise_fields(derive_seed(seed_for(number), purpose), shapes)]

        if opts.noise == "frame":
            return [fields_of(f.number) for f in frames], key_pos
        shot = fields_of(shot_key)
        if opts.noise == "shot":
            return [shot for _ in frames], key_pos
        # flow: chain the source flow from each key frame through its run
        per_index: dict[int, list] = {}
        for key in sorted({k for k, _ in keys.values()}):
            run = [i for i in sorted(keys) if keys[i][0] == key]
            chain = chain_flows([frames[first[i]].rgb for i in run], opts.flow)
            for i, (flow, valid) in zip(run, chain):
                per_index[i] = shot if i == key else flow_noise(
                    shot, flow, valid, fields_of(frames[first[i]].number, "fresh"), opts.flow_warp)
        return [per_index[i] for i in idx], key_pos

    def _render_temporal(self, job: WindowJob, stages, cond, shot_key: int, cross: bool) -> list:
        """Flow noise and/or cross-frame attention. Cross-frame renders each
        frame in a batch of two, [key frame, frame] (the key frame alone for
        itself), so a frame's pixels never depend on which other frames
        share its window. ``job.lookbehind`` (optional read-only source
        frames before the window) is used for flow and key frames only."""
        import random

        import torch

        from cinescale_post.cascade.loop import RandomSources, StageResult, run_ladder
        from cinescale_post.cascade.registry import resolver_for
        from cinescale_post.cascade.run import to_images, to_pixels
        from cinescale_post.ops.handles import HandleGroup

        opts = self.options
        behind = list(getattr(job, "lookbehind", ()) or ())
        frames = behind + list(job.frames)
        fields, key_pos = self._temporal_fields(frames, job.seed_for, stages, shot_key, cross)
        resolve = resolver_for(self)
        out_size = tuple(job.size)
        n = len(job.frames)
        outs: list = []
        for j in range(n):
            p = len(behind) + j
            group = [key_pos[p], p] if (cross and key_pos[p] != p) else [p]
            post_keys = [shot_key if opts.noise in ("shot", "flow") else frames[q].number for q in group]
            gens = [torch.Generator("cpu").manual_seed(int(job.seed_for(k))) for k in post_keys]
            jit_seed = int(job.seed_for(post_keys[-1]))
            rng = RandomSources(generator=gens[0] if len(gens) == 1 else gens,
                                jitter=random.Random(jit_seed * 7919 + 17) if opts.jitter else None,
                                posterior=opts.posterior,
                                renoise=[torch.cat([fields[q][s] for q in group]) for s in range(len(stages))])
            px = to_pixels([frames[q].rgb for q in group], self.device, self.vae_dtype or self.dtype)
            init = StageResult(size=(px.shape[-1], px.shape[-2]), pixels=px)
            self.frame_group = (len(group), 0)

            def prog(f: float, _j=j) -> None:
                job.progress((_j + f) / n)

            try:
                with HandleGroup("temporal") as patches:
                    if opts.cross_frame:
                        patches.add(resolve("fusion", CROSS_FRAME_FUSION).apply(self, None, latent_hw=None))
                    res = run_ladder(self, stages, cond, rng, init=init, resolve=resolve, freeu=self.freeu_spec(),
                                     mask=getattr(self, "mask", None),
                                     progress=prog)[-1]
            finally:
                self.frame_group = None
            outs.append(to_images(self.decode(res.latent[-1:]), out_size)[0])
        return outs

    def anchor_outputs(self, outs: Sequence, frames: Sequence) -> list:
        """Low-frequency anchoring of finished pictures to their source frames:
        (H, W, 3) float32 in [0, 1] each, source (h, w, 3); the source is
        upsampled bicubically and ``anchor_sigma`` is scaled by H/h, W/w."""
        import numpy as np
        import torch

        from cinescale_post.cascade.upscale import resize
        from cinescale_post.ops.temporal import anchor_low_frequencies

        opts = self.options
        res = []
        for img, src in zip(outs, frames):
            H, W = img.shape[:2]
            h, w = src.shape[:2]
            r = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
            s = resize(torch.from_numpy(np.ascontiguousarray(src[..., :3], dtype=np.float32)).permute(2, 0, 1)[None],
                       (W, H), "bicubic")
            sigma = (opts.anchor_sigma * H / h, opts.anchor_sigma * W / w)
            a = anchor_low_frequencies(r, s, opts.anchor_lowfreq, sigma, opts.anchor_filter)
            res.append(np.ascontiguousarray(a[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy(), dtype=np.float32))
        return res

    def generate(self, plan, seed_for) -> list:
        """Text to image: one image per frame number of the plan (generate plans
        have one), seeded with ``seed_for(number)``; (H, W, 3) float32 in [0, 1]."""
        import torch

        from cinescale_post.cascade.loop import RandomSources
        from cinescale_post.cascade.run import generate_images

        if self.pipe is None or self.plan is not plan:
            self.load(plan)
        out = (plan.output.width, plan.output.height)
        stages = self.ladder("generate", out)
        guidance = max(s.spec.guidance for s in stages)
        cond = self.condition(plan.prompt or "", plan.negative_prompt or "", size=stages[0].size,
                              guidance=guidance)
        numbers = tuple(getattr(plan, "frames", ()) or (0,))
        rngs = [RandomSources.from_seed(seed_for(n), jitter=self.options.jitter, posterior=self.options.posterior)
                for n in numbers]
        with _oom_guard():
            with torch.inference_mode():
                return generate_images(self, stages, cond, rngs, out_size=out, freeu=self.freeu_spec(),
                                       keep="all" if self.options.keep_stages else "last",
                                       mask=getattr(self, "mask", None))

    # ------------------------------------------------------------ memory (issue 6)

    def estimate_memory(self, plan) -> dict:
        """Peak device memory per stage from the model folder's configs (no
        weights loaded; ``cinescale_post.memory_model``) and the VAE tile /
        offload setting that fits the free memory of ``plan.device``."""
        from cinescale_post import memory_model as mm

        opts = SDXLOptions.from_dict(dict(plan.backend_options))
        folder = Path(opts.config or plan.model or "")
        if not folder.is_dir() or not (folder / "unet" / "config.json").is_file():
            return {"available": False, "reason": f"no diffusers configs at {str(folder) or '(no model)'} "
                    "(set backend_options.config for a single .safetensors file)"}
        elem = mm.dtype_bytes(plan.dtype)
        unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
        vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
        vae_fp32 = opts.vae_fp32 is True or (opts.vae_fp32 == "auto" and plan.dtype == "float16"
                                             and vae_cfg.get("force_upcast", False))
        vae_elem = 4 if vae_fp32 else elem
        comps = [c for c in (mm.component_from_folder("unet", folder / "unet", plan.dtype),
                             mm.component_from_folder("vae", folder / "vae", "float32" if vae_fp32 else plan.dtype),
                             mm.component_from_folder("text_encoder", folder / "text_encoder", plan.dtype),
                             mm.component_from_folder("text_encoder_2", folder / "text_encoder_2", plan.dtype))
                 if c is not None]
        f = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        base = int(unet_cfg["sample_size"]) * f
        out = (int(plan.output.width), int(plan.output.height))
        specs = parse_stages(list(plan.stages))
        mode = "render" if getattr(plan, "mode", "render") == "render" else "generate"
        ladder = resolve_ladder(specs, mode=mode, base_size=(base, base), output=out, multiple=f)
        cross = opts.cross_frame or any(s.fusion == CROSS_FRAME_FUSION for s in specs)
        kernel = "efficient"  # diffusers' AttnProcessor2_0: SDPA flash / memory-efficient
        chans = list(vae_cfg["block_out_channels"])
        stages = []
        for i, st in enumerate(ladder):
            w, h = st.size
            cfg_rows = 2 if (st.spec.guidance > 1.0 and unet_cfg.get("time_cond_proj_dim") is None) else 1
            batch = cfg_rows * (2 if cross else 1)
            lat = (h // f, w // f)

            def denoise(window, _lat=lat, _b=batch):
                return mm.unet_activation_bytes(unet_cfg, _lat, _b, elem, kernel=kernel)

            def vae(tile, window, _w=w, _h=h):
                t = (_w, _h) if tile is None else (min(tile, _w), min(tile, _h))
                return mm.vae_bytes(t, chans, vae_elem, out_size=(_w, _h) if tile is not None else None,
                                    latent_factor=f, kernel=kernel)

            stages.append(mm.StageDemand(f"stage {i}", (w, h), denoise, vae,
                                         {"latent": [lat[1], lat[0]], "unet_batch": batch}))
        s0 = int(vae_cfg.get("sample_size", base))
        tiles = ([] if opts.vae_tiling else [None]) + [t for t in (s0, s0 // 2, s0 // 4) if t >= 2 * f]
        offloads = ("none",) if str(plan.device).startswith("cpu") else ("none", "model", "sequential")
        free, source = mm.free_memory(plan.device)
        res = mm.plan_memory(comps, stages, free, denoisers=("unet",), tiles=tiles or [None], offloads=offloads,
                             windows=(1,))
        res.update(available=True, device=str(plan.device), dtype=plan.dtype, vae_dtype="float32" if vae_fp32
                   else plan.dtype, free_source=source, attention_kernel=kernel,
                   note="SDXL renders frame by frame: the window size does not change device memory")
        return res

    def _memory_steps(self) -> list:
        """The cheaper settings :meth:`reduce_memory` walks through, in order:
        VAE tiling on, halved VAE tiles (down to a quarter of the VAE's
        sample size, never under twice the latent factor), then model and sequential CPU
        offload (accelerator devices only: on CPU there is nowhere to offload to)."""
        pipe = self._need()
        vae = pipe.vae
        f = 2 ** (len(vae.config.block_out_channels) - 1)
        steps: list = []
        if not getattr(vae, "use_tiling", False):
            steps.append(("tiling", int(vae.tile_sample_min_size)))
        t = int(vae.tile_sample_min_size)
        floor = max(2 * f, int(vae.config.sample_size) // 4)
        while t // 2 >= floor:
            t //= 2
            steps.append(("tile", t))
        if self.device.type != "cpu":
            steps += [("offload", "model"), ("offload", "sequential")]
        return steps

    def apply_memory_choice(self, choice: dict) -> str | None:
        """Adopt the planner's setting at load (``plan.memory["choice"]``):
        VAE tile size and CPU offload; describe what changed, None if nothing."""
        pipe = self._need()
        done = []
        tile = choice.get("vae_tile")
        if tile:
            f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
            before = (bool(getattr(pipe.vae, "use_tiling", False)), int(pipe.vae.tile_sample_min_size))
            pipe.vae.enable_tiling()
            pipe.vae.tile_sample_min_size = int(tile)
            pipe.vae.tile_latent_min_size = int(tile) // f
            if before != (True, int(tile)):
                done.append(f"VAE tiles of {tile} px")
        offload = choice.get("offload", "none")
        if offload != "none" and self.device.type != "cpu" and getattr(self, "_offload", "none") == "none":
            if offload == "model":
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.enable_sequential_cpu_offload(device=self.device)
            self._offload = offload
            done.append(f"{offload} CPU offload")
        return ", ".join(done) or None

    def reduce_memory(self) -> str | None:
        """Switch the live pipeline to the next cheaper setting (see
        :meth:`_memory_steps`) and describe it; None when nothing is cheaper."""
        steps = self._memory_steps()
        if getattr(self, "_offload", "none") == "model":
            steps = [s for s in steps if s == ("offload", "sequential")]
        elif getattr(self, "_offload", "none") == "sequential":
            steps = []
        if not steps:
            return None
        kind, value = steps[0]
        pipe = self.pipe
        f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        if kind == "tiling":
            pipe.vae.enable_tiling()
            return f"VAE tiling on ({value} px tiles)"
        if kind == "tile":
            pipe.vae.tile_sample_min_size = value
            pipe.vae.tile_latent_min_size = value // f
            return f"VAE tiles of {value} px"
        if value == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.remove_all_hooks()
            pipe.enable_sequential_cpu_offload(device=self.device)
        self._offload = value
        return f"{value} CPU offload"

    def smoke(self, device: str = "cpu") -> dict:
        """Build tiny random SDXL models in memory and run a two-stage cascade
        (base 64 px -> 128 px with scale fusion, dilation and FreeU) on
        ``device``. Proves wiring and arithmetic, not picture quality."""
        import torch
        from diffusers import StableDiffusionXLPipeline

        from cinescale_post.cascade.loop import RandomSources
        from cinescale_post.cascade.run import generate_images
        from cinescale_post.testing_models import build_tiny_sdxl

        t0 = time.perf_counter()
        pipe = StableDiffusionXLPipeline(**build_tiny_sdxl(0))
        t_build = time.perf_counter() - t0
        self.attach(pipe, device=device, dtype=torch.float32, options=SDXLOptions.from_dict({}))
        specs = [StageSpec(scale=1, steps=4), StageSpec(scale=2, steps=4, restart_step=1, dilate_tau=3)]
        stages = self.ladder("generate", (128, 128), specs)
        cond = self.condition("a photo of the cat", "", size=stages[0].size, guidance=7.5)
        t1 = time.perf_counter()
        with torch.inference_mode():
            imgs = generate_images(self, stages, cond, [RandomSources.from_seed(123)], freeu=self.freeu_spec(),
                                   keep="all")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t_run = time.perf_counter() - t1
        ok = all(bool(torch.isfinite(torch.from_numpy(im)).all()) for im in imgs)
        self.unload()
        return {
            "backend": self.id, "device": str(device), "ok": ok,
            "stages": [{"size": list(s.size), "steps": s.spec.steps, "restart_index": s.restart_index,
                        "dilation": s.dilation, "fusion": s.fusion} for s in stages],
            "output_shapes": [list(im.shape) for im in imgs],
            "seconds": {"build": round(t_build, 3), "cascade": round(t_run, 3)},
            "note": "tiny random-weight models: this checks wiring and arithmetic, not picture quality",
        }


def load_pipeline(model: str | None, dtype: Any, *, config: str | None = None):
    """Load an SDXL pipeline from a local diffusers folder (safetensors only)
    or a single ``.safetensors`` file. Never unpickles, never downloads."""
    if not model:
        raise WeightsError("the sdxl backend needs model weights",
                           fix="pass --model PATH (a diffusers SDXL folder or a .safetensors file)")
    p = Path(model).expanduser()
    if not p.exists():
        raise WeightsError(f"model weights {model} not found",
                           fix="give a local diffusers folder or a .safetensors file (nothing is downloaded)")
    from diffusers import StableDiffusionXLPipeline

    try:
        if p.is_dir():
            if not (p / "model_index.json").is_file():
                raise WeightsError(f"{p} is not a diffusers pipeline folder (no model_index.json)",
                                   fix="point --model at the folder holding model_index.json, unet/ and vae/")
            return StableDiffusionXLPipeline.from_pretrained(str(p), dtype=dtype, local_files_only=True,
                                                             use_safetensors=True)
        if p.suffix.lower() != ".safetensors":
            raise WeightsError(f"{p.name}: only .safetensors single files are loaded (pickled "
                               f"{p.suffix} checkpoints can run code and are refused)",
                               fix="convert the checkpoint to .safetensors or use a diffusers folder")
        kw: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if config:
            kw["config"] = config
        return StableDiffusionXLPipeline.from_single_file(str(p), **kw)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure is a weights problem for the user
        raise WeightsError(f"cannot load SDXL weights from {p}: {type(exc).__name__}: {exc}",
                           fix=("for a single file, set backend_options.config to a diffusers SDXL folder "
                                "with the configs; check the files are complete safetensors")) from exc


class _oom_guard:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and "OutOfMemoryError" in exc_type.__name__ and exc_type is not OutOfMemoryError:
            raise OutOfMemoryError(f"out of GPU memory: {exc}",
                                   fix="use fusion fast_mode = true, window_batch = 4, a smaller last stage, "
                                       "or dtype float16") from exc
        return False


__all__ = ["SDXLBackend", "SDXLOptions", "load_pipeline"]
