"""The core render driver: one per render, around a plugin's model adapter.

:class:`RenderDriver` is the :class:`~cinescale_post.contracts.engine.Backend` the
orchestrator sees for a diffusion model. The adapter (``cinescale_post.api.
ModelAdapter``) contributes the model's own work — loading, encode/decode, one
denoiser call, patch points, frame rule, memory profile; the driver owns the
method and the pipeline:

* plan time (no torch): stage tables with the adapter's declared keys, the
  driver's options (:mod:`.options`), the model dtype, the memory estimate
  from the adapter's declared profile (``ops.memory_estimate``);
* run time: stage-ladder resolution, the conditioning cache, noise policies
  (:mod:`cinescale_post.cascade.noise`; the paths in :mod:`.image_path` and :mod:`.video_path`), temporal post-ops (cross-frame attention, low-frequency
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
from typing import Any, Callable, Mapping, Sequence

from cinescale_post.contracts.engine import Backend, WindowJob
from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.model import ModelAdapter, ModelPlan
import cinescale_post.render.image_path as image_path
import cinescale_post.render.smoke as smoke_test
import cinescale_post.render.video_path as video_path
from cinescale_post.render.loading import OOMGuard, load_detail_mask, on_rank_device, read_rgb, require_diffusion
from cinescale_post.render.options import CROSS_FRAME_FUSION, DriverOptions, assign_options

log = logging.getLogger(__name__)


class RenderDriver(Backend):
    """The engine of one render of a model adapter (see module docstring)."""

    def __init__(self, adapter: ModelAdapter, resolve: Callable[[str, str], Any]):
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
        self.takes_mattes = True  # the detail mask of the cascade (cosine_scale inside, cosine_scale_bg outside)
        self.resolve = resolve
        self.model: Any = None
        self.plan: Any = None
        self.options = DriverOptions.from_dict({}, caps)
        self.specs: list = []
        self.mask: Any = None
        self._cond_cache: dict = {}
        self._warned_key = False
        self._stage_outputs: dict = {}
        self._parallel: Any = None  # context-parallel handle (ops.context_parallel), one per load
        self._loaded_key: Any = None  # the adapter's load_key of the loaded model (None: never switched)
        self._memory: tuple = (None, False)  # (memory choice applied, reduced since the load)

    # ------------------------------------------------------------ plan time

    def validate(self, *, stages, options, size, source):
        specs = self.adapter.parse_stages(list(stages))
        mine, theirs = self._assign(options)
        opts = DriverOptions.from_dict(mine, self.caps, source)
        own = self.adapter.parse_options(theirs, source)
        return tuple(s.to_dict() for s in specs), {**opts.to_dict(self.caps.latent_layout), **own}

    def _assign(self, options: Mapping[str, Any]) -> tuple[dict, dict]:
        return assign_options(dict(options), self.caps.latent_layout, self.adapter.options_type.keys(), self.id)

    def model_options(self, options: Mapping[str, Any]) -> dict:
        """The adapter's part of validated ``backend_options``."""
        return self._assign(options)[1]

    def model_plan(self, plan: Any, device: str | None = None) -> ModelPlan:
        """The typed view of ``plan`` the adapter receives (``device``: instead
        of ``plan.device``, e.g. this rank's)."""
        mine, theirs = self._assign(plan.backend_options)
        return ModelPlan(model=plan.model, device=str(device or plan.device), dtype=plan.dtype,
                         stages=tuple(plan.stages), options=self.adapter.options_type.from_dict(theirs),
                         driver_options=mine, mode=plan.mode, window=max(int(plan.window.size), 1),
                         prompt=plan.prompt or "", negative_prompt=plan.negative_prompt or "")

    def lookbehind_frames(self, options: Mapping[str, Any], stages: Sequence[Mapping[str, Any]] = ()) -> int:
        """Source frames before a window the driver reads (not renders) so
        every frame finds its key frame: ``key_every - 1`` with noise = "flow"
        or cross-frame attention (image layout), else 0."""
        if self.caps.latent_layout != "image":
            return 0
        o = DriverOptions.from_dict(self._assign(options)[0], self.caps)
        cross = o.cross_frame or any(dict(s).get("fusion") == CROSS_FRAME_FUSION for s in stages)
        return o.key_every - 1 if (o.noise == "flow" or cross) else 0

    def weight_files(self, plan) -> list[str]:
        files = list(self.adapter.weight_files(self.model_plan(plan)))
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

        prof = self.adapter.memory_profile(self.model_plan(plan))
        if isinstance(prof, str):
            return {"available": False, "reason": prof}
        out = (int(plan.output.width), int(plan.output.height))
        mode = "render" if plan.mode == "render" else "generate"
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
        self._adopt(plan)
        self.model = self.adapter.load(self._load_plan(plan))
        self._loaded_key = self._key(plan)
        self._memory = (None, False)
        self._parallelize(self.model)

    def switch(self, plan) -> bool:
        """Render ``plan`` with the loaded model when the adapter's
        ``load_key`` says its load would read the same (weights, device,
        dtype, options), context parallelism is the same, the memory plan
        chose the same VAE tile and offload, and no out-of-memory back-off
        changed the model since: then the pixels are those of a fresh load."""
        if self.model is None or self._loaded_key is None or self._memory[1]:
            return False
        choice = dict(plan.memory["choice"]) if plan.memory.get("available") else None
        if self._key(plan) != self._loaded_key or choice != self._memory[0]:
            return False
        self._adopt(plan)
        return True

    def _load_plan(self, plan) -> ModelPlan:
        cp = DriverOptions.from_dict(self._assign(plan.backend_options)[0], self.caps).context_parallel
        return self.model_plan(plan, on_rank_device(plan.device, cp))

    def _key(self, plan):
        view = self._load_plan(plan)
        key = self.adapter.load_key(view)
        return None if key is None else (key, repr(view.driver_options.get("context_parallel")))

    def _adopt(self, plan) -> None:
        """The per-render state ``plan`` sets (options, stages, detail mask,
        an empty conditioning cache), the model untouched."""
        self.plan = plan
        self.options = DriverOptions.from_dict(self._assign(plan.backend_options)[0], self.caps)
        self.specs = self.adapter.parse_stages(list(plan.stages))
        self.mask = load_detail_mask(self.options.detail_mask, self.options.detail_mask_soft)
        self._cond_cache = {}
        self._warned_key = False

    def use(self, model: Any, plan: Any = None, *, stages: Sequence[Mapping[str, Any]] | None = None,
            options: Mapping[str, Any] | None = None) -> "RenderDriver":
        """Drive an already built ``model`` (tests, benchmarks, the smoke test)."""
        self.model = model
        self.plan = plan
        opts = dict(options if options is not None else (plan.backend_options if plan is not None else {}))
        self.options = DriverOptions.from_dict(self._assign(opts)[0], self.caps)
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
        from cinescale_post.ops.context_parallel import enable_context_parallel
        from cinescale_post.ops.distributed import init_distributed

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
        self._loaded_key = None
        self._cond_cache = {}

    def prompts(self) -> tuple[str, str]:
        """The plan's (prompt, negative prompt); empty when driven without a
        plan (``use(model)`` in tests)."""
        if self.plan is None:
            return "", ""
        return self.plan.prompt or "", self.plan.negative_prompt or ""

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

    def conditions(self, stages, *, size: tuple[int, int], guidance: float, image: Any = None) -> Any:
        """The conditioning of ``stages``: the render's prompts, or a
        ``StageConditions`` where stages give their own (``stages.N.prompt``,
        ``negative_prompt``); each distinct one computed once."""
        prompt, negative = self.prompts()
        base = self.condition(prompt, negative, size=size, guidance=guidance, image=image)
        own = {s.index: (s.spec.prompt if s.spec.prompt is not None else prompt,
                         s.spec.negative_prompt if s.spec.negative_prompt is not None else negative)
               for s in stages if s.spec.prompt is not None or s.spec.negative_prompt is not None}
        if not own:
            return base
        from cinescale_post.cascade.sources import StageConditions

        return StageConditions(base, {i: self.condition(p, n, size=size, guidance=guidance, image=image)
                                      for i, (p, n) in own.items()})

    def job_mask(self, job, frames: Sequence[int] | None = None, *, latent_groups=None):
        """The detail mask for frames ``frames`` (indices; default all) of
        ``job``: its mattes as (B, 1, H, W), or with ``latent_groups`` (a
        video window: frame indices per latent frame) their union per latent
        frame, (1, 1, T, H, W); the plan's still detail mask without mattes."""
        if not job.mattes:
            return self.mask
        import numpy as np
        import torch

        from cinescale_post.cascade.schedule import DetailMask

        mattes = [np.asarray(m, np.float32) for m in job.mattes]
        if latent_groups is not None:
            values = np.stack([np.max([mattes[i] for i in g], axis=0) for g in latent_groups])[None, None]
        else:
            values = np.stack([mattes[i] for i in (frames if frames is not None else range(len(mattes)))])[:, None]
        return DetailMask(torch.from_numpy(np.ascontiguousarray(values)), soft=self.options.detail_mask_soft)

    def run_cascade(self, stages, cond, rng, *, init=None, frames: int | None = None, keep: str = "last",
                    progress: Callable[[float], None] | None = None, group: tuple[int, int] = (1, 0),
                    mask: Any = None):
        """The core ladder on the model; each result's ``info`` also gets the
        model's ``stage_info``. ``mask``: a window's detail mask (``job_mask``)
        instead of the plan's."""
        from cinescale_post.cascade.ladder import run_ladder

        model = self._need()
        results = run_ladder(model, stages, cond, rng, init=init, resolve=self.resolve, freeu=model.freeu(),
                             mask=self.mask if mask is None else mask, keep=keep, frames=frames, progress=progress,
                             group=group)
        by_index = {s.index: s for s in stages}
        for res in results:
            res.info.update(model.stage_info(by_index[res.stage]))
        return results

    def _guard(self) -> OOMGuard:
        return OOMGuard(self.adapter.oom_advice or
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
                return video_path.render_video(self, job)
            return image_path.render_images(self, job)

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
        numbers = tuple(plan.frames) or (1001,)
        opts = self.options
        with self._guard(), torch.inference_mode():
            if self.caps.latent_layout == "image":
                from cinescale_post.cascade.sources import RandomSources
                from cinescale_post.cascade.frames import generate_images

                cond = self.conditions(stages, size=stages[0].size, guidance=guidance)
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
            cond = self.conditions(stages, size=stages[0].size, guidance=guidance, image=image)
            f_lat = (int(opts.num_frames) - 1) // int(self.model.model_info.temporal_factor) + 1
            rng = video_path.video_sources(self, seed_for(numbers[0]), stages, f_lat)
            res = self.run_cascade(stages, cond, rng, frames=f_lat)[-1]
            return video_path.video_frames(self.model, self.model.decode(res.latent), out)[:opts.num_frames]

    def stage_outputs(self) -> dict:
        """Stage index -> images of the earlier stages of the last ``generate``
        with ``keep_stages`` (see ``Backend.stage_outputs``)."""
        return dict(self._stage_outputs)

    # ------------------------------------------------------------ the two paths (image_path, video_path)

    def temporal_fields(self, frames: Sequence[Any], seed_for, stages, shot_key: int, cross: bool = False):
        """Re-noise fields and key-frame positions of ``frames`` (:func:`.image_path.temporal_fields`)."""
        return image_path.temporal_fields(self, frames, seed_for, stages, shot_key, cross)

    def anchor_outputs(self, outs: Sequence, frames: Sequence) -> list:
        """Low-frequency anchoring of finished pictures (:func:`.image_path.anchor_outputs`)."""
        return image_path.anchor_outputs(self, outs, frames)

    def video_sources(self, seed: int, stages, frames: int):
        """Every noise tensor of one video cascade (:func:`.video_path.video_sources`)."""
        return video_path.video_sources(self, seed, stages, frames)

    # ------------------------------------------------------------ memory

    def apply_memory_choice(self, choice: Mapping[str, Any]) -> str | None:
        self._memory = (dict(choice), self._memory[1])
        return self._need().apply_memory_choice(dict(choice))

    def reduce_memory(self) -> str | None:
        """Switch the live model to the next cheaper step it declares
        (``Model.memory_steps``) and describe it; None when none is left."""
        model = self._need()
        steps = model.memory_steps()
        if not steps:
            return None
        self._memory = (self._memory[0], True)  # the model now differs from a fresh load: never switched
        return model.apply_memory(steps[0])

    def smoke(self, device: str = "cpu") -> dict | None:
        """The adapter's tiny model through a two-stage cascade (:func:`.smoke.smoke`)."""
        return smoke_test.smoke(self, device)


__all__ = ["RenderDriver"]
