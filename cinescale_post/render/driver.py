"""The core render driver: one per render, around a plugin's model adapter.

:class:`RenderDriver` is the :class:`~cinescale_post.contracts.engine.Backend` the
orchestrator sees for a diffusion model. The adapter (``cinescale_post.api.
ModelAdapter``) contributes the model's own work — loading, encode/decode, one
denoiser call, patch points, frame rule, memory profile; the driver owns the
method and the pipeline:

* plan time (no torch): stage tables with the adapter's declared keys, the
  driver's options (:mod:`.options`), the model dtype, the memory estimate
  from the adapter's declared profile (``memory_model``);
* run time: stage-ladder resolution, the conditioning cache, noise policies
  (:mod:`.noise`), temporal post-ops (cross-frame attention, low-frequency
  anchoring), out-of-memory back-off over the steps the model declares, the
  smoke test.

Upscalers and fusions named in stages are looked up through ``resolve(kind,
name)``, given explicitly (the host passes its own lookup). Per-window data
(stages, prompt, random sources, the frame group of cross-frame attention)
is handed down in arguments, never stored in plugin objects.

Importing this module does not import torch.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

from cinescale_post.contracts.model import ModelAdapter
from cinescale_post.contracts.errors import OutOfMemoryError, PlanError
from cinescale_post.contracts.engine import Backend, WindowJob
from cinescale_post.render.options import CROSS_FRAME_FUSION, DriverOptions, split_options

log = logging.getLogger(__name__)


def builtin_resolve(kind: str, name: str) -> Any:
    """Built-in upscalers and fusions only (a driver made without a host:
    tests, the smoke test)."""
    from cinescale_post.contracts.errors import UnknownNameError

    if kind == "upscaler":
        from cinescale_post.builtin.latent_upscalers import UPSCALERS as table
    else:
        from cinescale_post.builtin.fusions import FUSIONS
        from cinescale_post.builtin.temporal_fusions import FUSIONS as TEMPORAL

        table = {**FUSIONS, **TEMPORAL}
    if name not in table:
        raise UnknownNameError(f"unknown {kind} {name!r}", fix=f"use one of: {', '.join(sorted(table))}")
    return table[name]


class _OOMGuard:
    """Torch's out-of-memory errors as our :class:`OutOfMemoryError` (exit 5)
    with the adapter's advice; the orchestrator's back-off still sees them."""

    def __init__(self, advice: str):
        self.advice = advice

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and "OutOfMemoryError" in exc_type.__name__ and exc_type is not OutOfMemoryError:
            raise OutOfMemoryError(f"out of GPU memory: {exc}", fix=self.advice) from exc
        return False


def read_rgb(path: str):
    """An image file (PNG/TIFF/JPEG/EXR, any depth) as (H, W, 3) float32 R'G'B'
    (first frame of i2v), through the media readers' ``read_image``."""
    import numpy as np

    from cinescale_post.media.sequence_reader import read_image

    return np.ascontiguousarray(np.asarray(read_image(path).rgb, np.float32)[..., :3])


def load_detail_mask(path: str | None, soft: bool = False):
    """The detail mask of ``path`` as a ``DetailMask`` over a (1, 1, H, W)
    float tensor, or None. Reference (FreeScale imgen): any non-zero pixel is
    detail, so a grey 0.3 band counts; ``soft``: the grey level (mean RGB) is
    the per-pixel weight between ``cosine_scale`` and ``cosine_scale_bg``."""
    if not path:
        return None
    import numpy as np
    import torch

    from cinescale_post.media.sequence_reader import read_image
    from cinescale_post.cascade.schedule import DetailMask

    rgb = np.asarray(read_image(path).rgb, np.float32)
    values = rgb.mean(axis=-1) if soft else (np.abs(rgb).max(axis=-1) != 0).astype(np.float32)
    return DetailMask(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None], soft=soft)


DIFFUSION_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors")


def require_diffusion(backend_id: str) -> None:
    """Refuse to load a model on a core-only install (no torch...), naming the
    extra that adds them; planning (``--dry-run``, ``--gpu``) needs none of them."""
    import importlib.util

    from cinescale_post.contracts.errors import UsageError

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except ImportError:  # a finder that refuses it (or a broken install): not importable either
            return True

    missing = [m for m in DIFFUSION_LIBRARIES if absent(m)]
    if missing:
        raise UsageError(f"backend {backend_id!r} needs {', '.join(missing)}, which this install does not have",
                         fix="pip install 'cinescale-post[diffusion]' (the diffusion backends' libraries), or "
                             "render with a draft preset such as uhd-draft")


def padded_length(n: int, rule: Any) -> int:
    """Smallest length >= n the frame rule accepts (4k+1: 1 -> 1, 6 -> 9)."""
    k = max(n, rule.offset or 1)
    while not rule.accepts(k):
        k += 1
    return k


def _on_rank_device(plan: Any, spec: Mapping[str, Any]) -> Any:
    """The plan the adapter loads with: under context parallelism the process
    group exists and the device is this rank's (``cuda:LOCAL_RANK``) before
    any weight moves (``ops.context_parallel.init_distributed``)."""
    if not spec:
        return plan
    import copy

    from cinescale_post.ops.context_parallel import init_distributed

    dev = str(init_distributed(spec, plan.device))
    if dev == str(plan.device):
        return plan
    plan = copy.copy(plan)
    object.__setattr__(plan, "device", dev)  # a frozen Plan: this copy only, for the adapter's load
    return plan


class RenderDriver(Backend):
    """The engine of one render of a model adapter (see module docstring)."""

    def __init__(self, adapter: ModelAdapter, resolve: Callable[[str, str], Any] | None = None):
        caps = adapter.capabilities
        self.adapter = adapter
        self.caps = caps
        self.id = adapter.id
        self.family = caps.family
        self.capabilities = frozenset(caps.tasks)
        self.frame_rule = caps.frame_rule
        self.temporal = caps.latent_layout == "video"
        self.dtypes = tuple(caps.dtypes)
        self.description = adapter.description
        self.resolve = resolve or builtin_resolve
        self.model: Any = None
        self.plan: Any = None
        self.options = DriverOptions.from_dict({}, caps)
        self.specs: list = []
        self.mask: Any = None
        self._cond_cache: dict = {}
        self._warned_key = False
        self._stage_outputs: dict = {}
        self._parallel: Any = None  # context-parallel handle (ops.context_parallel), one per load

    # ------------------------------------------------------------ plan time

    def validate(self, *, stages, options, size, source):
        specs = self.adapter.parse_stages(list(stages))
        mine, theirs = split_options(dict(options), self.caps.latent_layout)
        opts = DriverOptions.from_dict(mine, self.caps, source)
        own = self.adapter.parse_options(theirs, source)
        return tuple(s.to_dict() for s in specs), {**opts.to_dict(self.caps.latent_layout), **own}

    def model_options(self, options: Mapping[str, Any]) -> dict:
        """The adapter's part of validated ``backend_options``."""
        return split_options(dict(options), self.caps.latent_layout)[1]

    def lookbehind_frames(self, options: Mapping[str, Any], stages: Sequence[Mapping[str, Any]] = ()) -> int:
        """Source frames before a window the driver reads (not renders) so
        every frame finds its key frame: ``key_every - 1`` with noise = "flow"
        or cross-frame attention (image layout), else 0."""
        if self.caps.latent_layout != "image":
            return 0
        o = DriverOptions.from_dict(split_options(dict(options), "image")[0], self.caps)
        cross = o.cross_frame or any(dict(s).get("fusion") == CROSS_FRAME_FUSION for s in stages)
        return o.key_every - 1 if (o.noise == "flow" or cross) else 0

    def weight_files(self, plan) -> list[str]:
        files = list(self.adapter.weight_files(plan))
        opts = dict(plan.backend_options)
        for k in ("noise_file", "image", "detail_mask"):
            if opts.get(k) and str(opts[k]) not in files:
                files.append(str(opts[k]))
        return files

    def estimate_memory(self, plan) -> dict:
        """Peak device memory per stage from the adapter's memory profile (no
        weights loaded; ``cinescale_post.ops.memory_estimate``) and the VAE tile /
        window / offload setting that fits the free memory of ``plan.device``."""
        import cinescale_post.ops.memory_estimate as mm
        from cinescale_post.contracts.stages import resolve_ladder

        prof = self.adapter.memory_profile(plan)
        if isinstance(prof, str):
            return {"available": False, "reason": prof}
        out = (int(plan.output.width), int(plan.output.height))
        mode = "render" if getattr(plan, "mode", "render") == "render" else "generate"
        ladder = resolve_ladder(self.adapter.parse_stages(list(plan.stages)), mode=mode, base_size=prof.base_size,
                                output=out, multiple=prof.size_multiple)
        stages = []
        for i, st in enumerate(ladder):
            d = prof.stage(st.size, st)
            stages.append(mm.StageDemand(f"stage {i}", st.size, d.denoise, d.vae, dict(d.info)))
        free, source = mm.free_memory(plan.device)
        res = mm.plan_memory(list(prof.components), stages, free, denoisers=tuple(prof.denoisers),
                             tiles=list(prof.tiles) or [None], offloads=tuple(prof.offloads),
                             windows=tuple(prof.windows))
        facts = dict(prof.facts)
        res.update(available=True, device=str(plan.device), dtype=plan.dtype,
                   vae_dtype=facts.pop("vae_dtype", plan.dtype), free_source=source, **facts)
        return res

    # ------------------------------------------------------------ loading

    def load(self, plan) -> None:
        """Parse the plan's options and stages and load a fresh model."""
        require_diffusion(self.id)
        if plan.dtype not in self.dtypes:
            raise PlanError(f"dtype {plan.dtype!r}", fix=f"use one of: {', '.join(self.dtypes)}")
        self.plan = plan
        self.options = DriverOptions.from_dict(split_options(dict(plan.backend_options),
                                                             self.caps.latent_layout)[0], self.caps)
        self.specs = self.adapter.parse_stages(list(plan.stages))
        self.model = self.adapter.load(_on_rank_device(plan, self.options.context_parallel))
        self._parallelize(self.model)
        self.mask = load_detail_mask(self.options.detail_mask, self.options.detail_mask_soft)
        self._cond_cache = {}
        self._warned_key = False

    def use(self, model: Any, plan: Any = None, *, stages: Sequence[Mapping[str, Any]] | None = None,
            options: Mapping[str, Any] | None = None) -> "RenderDriver":
        """Drive an already built ``model`` (tests, benchmarks, the smoke test)."""
        self.model = model
        self.plan = plan
        opts = dict(options if options is not None else (plan.backend_options if plan is not None else {}))
        self.options = DriverOptions.from_dict(split_options(opts, self.caps.latent_layout)[0], self.caps)
        if stages is not None or plan is not None:
            self.specs = self.adapter.parse_stages(list(stages if stages is not None else plan.stages))
        self._parallelize(model)
        self.mask = load_detail_mask(self.options.detail_mask, self.options.detail_mask_soft)
        self._cond_cache = {}
        self._warned_key = False
        return self

    def _parallelize(self, model: Any) -> None:
        """Context parallelism (``backend_options.context_parallel``) over the
        model's denoisers: installed once per load, after the adapter's own
        load-time changes (LoRA) and before any stage handle, whose
        processors copy its parallel config; removed before the model unloads."""
        if self._parallel is not None:
            self._parallel.remove()
            self._parallel = None
        spec = self.options.context_parallel
        if not spec:
            return
        from cinescale_post.ops.context_parallel import enable_context_parallel, init_distributed

        init_distributed(spec, model.device)  # no-op once the group exists (load made it)
        self._parallel = enable_context_parallel(model.denoisers, spec, device=model.device,
                                                 attention=self.caps.attention)

    def unload(self) -> None:
        if self._parallel is not None:
            self._parallel.remove()
            self._parallel = None
        if self.model is not None:
            self.model.unload()
        self.model = None
        self._cond_cache = {}

    def _need(self):
        if self.model is None:
            raise RuntimeError(f"the {self.id} backend is not loaded; call load(plan) first")
        return self.model

    # ------------------------------------------------------------ the method

    def ladder(self, mode: str, output: tuple[int, int], specs: Sequence[Any] | None = None):
        """The resolved stage ladder for ``output`` (sizes snapped to the model's multiple)."""
        from cinescale_post.contracts.stages import resolve_ladder

        info = self._need().model_info
        return resolve_ladder(self.specs if specs is None else specs, mode=mode, base_size=info.base_size,
                              output=output, multiple=info.size_multiple, dilation_base=info.dilation_base)

    def condition(self, prompt: str, negative_prompt: str = "", *, size: tuple[int, int], guidance: float,
                  image: Any = None) -> Any:
        """The model's conditioning, computed once per (prompt, size, guidance, image)."""
        key = (prompt, negative_prompt, tuple(size), float(guidance), id(image))
        if key not in self._cond_cache:
            self._cond_cache[key] = self._need().condition(prompt, negative_prompt, size=tuple(size),
                                                           guidance=guidance, image=image)
        return self._cond_cache[key]

    def run_cascade(self, stages, cond, rng, *, init=None, frames: int | None = None, keep: str = "last",
                    progress: Callable[[float], None] | None = None, group: tuple[int, int] = (1, 0)):
        """The core ladder on the model; each result's ``info`` also gets the
        model's ``stage_info``."""
        from cinescale_post.cascade.ladder import run_ladder

        model = self._need()
        results = run_ladder(model, stages, cond, rng, init=init, resolve=self.resolve, freeu=model.freeu(),
                             mask=self.mask, keep=keep, frames=frames, progress=progress, group=group)
        by_index = {s.index: s for s in stages}
        for res in results:
            res.info.update(model.stage_info(by_index[res.stage]))
        return results

    def _guard(self) -> _OOMGuard:
        return _OOMGuard(self.adapter.oom_advice or
                         "use a smaller last stage, dtype float16/bfloat16 or fewer frames per window")

    def render(self, job: WindowJob) -> list:
        """Refine every frame of ``job`` at ``job.size`` (image layout: frame by
        frame with the noise policy and temporal post-ops; video layout: the
        window as a whole, padded to the frame rule)."""
        import torch

        self._need()
        if not job.frames:
            return []
        with self._guard(), torch.inference_mode():
            if self.caps.latent_layout == "video":
                return self._render_video(job)
            return self._render_images(job)

    def generate(self, plan, seed_for) -> list:
        """Text (or first frame) to image/video: (H, W, 3) float32 in [0, 1]
        at the output size; one image per frame number of the plan (image
        layout) or ``num_frames`` frames (video layout)."""
        import torch

        if self.model is None or self.plan is not plan:
            self.load(plan)
        out = (plan.output.width, plan.output.height)
        stages = self.ladder("generate", out)
        guidance = max(s.spec.guidance for s in stages)
        numbers = tuple(getattr(plan, "frames", ()) or (1001,))
        opts = self.options
        with self._guard(), torch.inference_mode():
            if self.caps.latent_layout == "image":
                from cinescale_post.cascade.ladder import RandomSources
                from cinescale_post.cascade.frames import generate_images

                cond = self.condition(plan.prompt or "", plan.negative_prompt or "", size=stages[0].size,
                                      guidance=guidance)
                rngs = [RandomSources.from_seed(seed_for(n), jitter=opts.jitter, posterior=opts.posterior)
                        for n in numbers]
                model = self.model
                if not opts.keep_stages:
                    return generate_images(model, stages, cond, rngs, out_size=out, freeu=model.freeu(),
                                           mask=self.mask, resolve=self.resolve)
                # every stage of every image, in that order (the reference returns them all)
                every = generate_images(model, stages, cond, rngs, freeu=model.freeu(), keep="all", mask=self.mask,
                                        resolve=self.resolve)
                n = len(stages)
                self._stage_outputs = {k: every[k::n] for k in range(n - 1)}
                return every[n - 1::n]
            image = read_rgb(opts.image) if opts.image else None
            self.model.check_task("i2v" if image is not None else "t2v", image)
            cond = self.condition(plan.prompt or "", plan.negative_prompt or "", size=stages[0].size,
                                  guidance=guidance, image=image)
            f_lat = (int(opts.num_frames) - 1) // int(self.model.model_info.temporal_factor) + 1
            rng = self.video_sources(seed_for(numbers[0]), stages, f_lat)
            res = self.run_cascade(stages, cond, rng, frames=f_lat)[-1]
            return self.model.to_frames(self.model.decode(res.latent), out)[:opts.num_frames]

    # ------------------------------------------------------------ image layout

    def stage_outputs(self) -> dict:
        """Stage index -> images of the earlier stages of the last ``generate``
        with ``keep_stages`` (see ``Backend.stage_outputs``)."""
        return dict(self._stage_outputs)

    def _shot_key(self, job: WindowJob) -> int:
        key = self.options.shot_frame
        if key is None:  # no source at plan time: the first frame of the render
            selected = tuple(getattr(self.plan, "frames", ()) or ())
            key = selected[0] if selected else job.frames[0].number
        return key

    def _render_images(self, job: WindowJob) -> list:
        from cinescale_post.cascade.ladder import RandomSources
        from cinescale_post.cascade.frames import refine_frames

        model = self.model
        plan = self.plan
        opts = self.options
        stages = self.ladder("render", tuple(job.size))
        frames = [f.rgb for f in job.frames]
        h0, w0 = frames[0].shape[:2]
        guidance = max(s.spec.guidance for s in stages)
        cond = self.condition(getattr(plan, "prompt", "") or "", getattr(plan, "negative_prompt", "") or "",
                              size=(w0, h0), guidance=guidance)
        shot_key = self._shot_key(job)
        cross = opts.cross_frame or any(s.fusion == CROSS_FRAME_FUSION for s in stages)
        from cinescale_post.cascade.noise import policy

        if not policy(opts.noise).explicit and not cross:
            def rng_for(i: int) -> RandomSources:
                key = shot_key if opts.noise == "shot" else job.frames[i].number
                return RandomSources.from_seed(job.seed_for(key), jitter=opts.jitter, posterior=opts.posterior)

            outs = refine_frames(model, frames, stages, cond, rng_for, out_size=tuple(job.size), freeu=model.freeu(),
                                 progress=job.progress, mask=self.mask, resolve=self.resolve)
        else:
            outs = self._render_temporal(job, stages, cond, shot_key, cross)
        if opts.anchor_lowfreq > 0.0:
            outs = self.anchor_outputs(outs, frames)
        return outs

    def _warn_key(self, numbers: list, every: int) -> None:
        if self._warned_key:
            return
        self._warned_key = True  # once per render: every window of a badly laid-out plan would repeat it
        log.warning("frames %s: their key frames (every %d source frames) are not in this window, so they are "
                    "anchored at the window's first frame; fix: window.size a multiple of key_every, or --handles "
                    "%d", numbers, every, every - 1)

    def temporal_fields(self, frames: Sequence[Any], seed_for, stages, shot_key: int, cross: bool = False):
        """Re-noise fields and key-frame positions of ``frames`` (see
        :func:`.noise.image_fields`)."""
        from cinescale_post.cascade.noise import image_fields

        opts = self.options
        warn = self._warn_key if (opts.noise == "flow" or cross) else None
        return image_fields(self._need(), frames, seed_for, stages, shot_key, noise=opts.noise,
                            key_every=opts.key_every, flow=opts.flow, flow_warp=opts.flow_warp, warn=warn)

    def _render_temporal(self, job: WindowJob, stages, cond, shot_key: int, cross: bool) -> list:
        """Flow noise and/or cross-frame attention. Cross-frame renders each
        frame in a batch of two, [key frame, frame] (the key frame alone for
        itself), so a frame's pixels never depend on which other frames share
        its window. ``job.lookbehind`` is used for flow and key frames only."""
        import random

        import torch

        from cinescale_post.ops.handles import HandleGroup
        from cinescale_post.cascade.ladder import RandomSources, StageResult
        from cinescale_post.cascade.frames import to_images, to_pixels

        model = self.model
        opts = self.options
        behind = list(job.lookbehind or ())
        frames = behind + list(job.frames)
        fields, key_pos = self.temporal_fields(frames, job.seed_for, stages, shot_key, cross)
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
            px = to_pixels([frames[q].rgb for q in group], model.device, model.vae_dtype or model.dtype)
            init = StageResult(size=(px.shape[-1], px.shape[-2]), pixels=px)
            frame_group = (len(group), 0)

            def prog(f: float, _j=j) -> None:
                job.progress((_j + f) / n)

            with HandleGroup("temporal") as patches:
                if opts.cross_frame:
                    patches.add(self.resolve("fusion", CROSS_FRAME_FUSION).apply(model, None, latent_hw=None,
                                                                                 group=frame_group))
                res = self.run_cascade(stages, cond, rng, init=init, progress=prog, group=frame_group)[-1]
            outs.append(to_images(model.decode(res.latent[-1:]), out_size)[0])
        return outs

    def anchor_outputs(self, outs: Sequence, frames: Sequence) -> list:
        """Low-frequency anchoring of finished pictures to their source frames:
        (H, W, 3) float32 in [0, 1] each, source (h, w, 3); the source is
        upsampled bicubically and ``anchor_sigma`` is scaled by H/h, W/w."""
        import numpy as np
        import torch

        from cinescale_post.ops.temporal import anchor_low_frequencies
        from cinescale_post.cascade.upscale import resize

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

    # ------------------------------------------------------------ video layout

    def video_sources(self, seed: int, stages, frames: int):
        """Every noise tensor of one video cascade, by the noise policy (or
        read from ``noise_file``: controlled mode)."""
        from cinescale_post.cascade.noise import from_file, policy

        opts = self.options
        if opts.noise_file:
            return from_file(opts.noise_file, seed, stages)
        return policy(opts.noise).draw(self._need(), seed, stages, frames, opts.posterior)

    def _render_video(self, job: WindowJob) -> list:
        import torch

        from cinescale_post.cascade.frames import refine_video, video_to_pixels
        from cinescale_post.contracts.stages import snap

        model = self.model
        plan = self.plan
        frames = [f.rgb for f in job.frames]
        n = len(frames)
        total = padded_length(n, self.frame_rule)
        frames = frames + [frames[-1]] * (total - n)
        info = model.model_info
        h0, w0 = frames[0].shape[:2]
        src_size = (snap(w0, info.size_multiple), snap(h0, info.size_multiple))
        stages = self.ladder("render", tuple(job.size))
        guidance = max(s.spec.guidance for s in stages)
        cond = self.condition(getattr(plan, "prompt", "") or "", getattr(plan, "negative_prompt", "") or "",
                              size=src_size, guidance=guidance)
        seed = job.seed_for(job.frames[0].number)
        f_lat = (total - 1) // int(info.temporal_factor) + 1
        px = video_to_pixels(frames, src_size, model.device, torch.float32)
        rng = self.video_sources(seed, stages, f_lat)
        decoded = refine_video(model, px, stages, cond, rng, progress=job.progress, resolve=self.resolve,
                               freeu=model.freeu())
        return model.to_frames(decoded, tuple(job.size))[:n]

    # ------------------------------------------------------------ memory

    def apply_memory_choice(self, choice: Mapping[str, Any]) -> str | None:
        return self._need().apply_memory_choice(dict(choice))

    def reduce_memory(self) -> str | None:
        """Switch the live model to the next cheaper step it declares
        (``Model.memory_steps``) and describe it; None when none is left."""
        model = self._need()
        steps = model.memory_steps()
        if not steps:
            return None
        return model.apply_memory(steps[0])

    # ------------------------------------------------------------ smoke test

    def smoke(self, device: str = "cpu") -> dict:
        """Build the adapter's tiny random model in memory and run its
        two-stage generate cascade on ``device``. Proves wiring and
        arithmetic, not picture quality."""
        import numpy as np
        import torch

        from cinescale_post.cascade.ladder import RandomSources
        from cinescale_post.cascade.frames import to_images

        t0 = time.perf_counter()
        setup = self.adapter.tiny_model(device)
        if setup is None:
            return None
        t_build = time.perf_counter() - t0
        model = setup["model"]
        self.use(model, stages=setup["stages"], options=setup.get("options", {}))
        size = tuple(setup["size"])
        lad = self.ladder("generate", size)
        cond = self.condition(setup.get("prompt", "a photo of the cat"), setup.get("negative_prompt", ""),
                              size=lad[0].size, guidance=max(s.spec.guidance for s in lad))
        frames = setup.get("frames")
        t1 = time.perf_counter()
        with torch.inference_mode():
            if frames is None:
                res = self.run_cascade(lad, cond, RandomSources.from_seed(123), keep="all")
                outs = [to_images(model.decode(r.latent))[0] for r in res]
                shapes = [list(im.shape) for im in outs]
            else:
                res = self.run_cascade(lad, cond, self.video_sources(123, lad, frames), frames=frames, keep="all")
                vids = [model.to_frames(model.decode(r.latent), r.size) for r in res]
                outs = [f for v in vids for f in v]
                shapes = [[len(v), *v[0].shape] for v in vids]
        if getattr(model.device, "type", str(model.device)) == "cuda":
            torch.cuda.synchronize()
        t_run = time.perf_counter() - t1
        ok = all(bool(np.isfinite(im).all()) for im in outs)
        facts = dict(setup.get("facts", {}))
        self.unload()
        return {"backend": self.id, "device": str(device), "ok": ok, **facts,
                "stages": [{"size": list(s.size), "steps": s.spec.steps, "restart_index": s.restart_index,
                            "dilation": s.dilation, "fusion": s.fusion} for s in lad],
                "output_shapes": shapes,
                "seconds": {"build": round(t_build, 3), "cascade": round(t_run, 3)},
                "note": "tiny random-weight models: this checks wiring and arithmetic, not picture quality"}


__all__ = ["RenderDriver", "builtin_resolve", "load_detail_mask", "padded_length", "read_rgb"]
