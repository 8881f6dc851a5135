"""Simulate one plan: real-size models on meta, the project's backend and cascade driver, the tracker.

This is the thin layer between the simulation kit (configs, meta builders,
tracker, scheduler shim) and the render code. It

1. builds every component of the plan's model from its configs on the meta
   device (:func:`meta_components`: a diffusers folder's ``config.json`` files
   -- ``--model`` or ``backend_options.config`` -- or a built-in architecture
   of :mod:`.configs`; no weights are read);
2. attaches them to the plan's backend (the same SDXL / Wan code that renders),
   on device ``"meta"`` with the plan's dtype, options and the memory
   planner's choice (VAE tile, window);
3. runs the text encoders and the cascade driver with every patch the plan's
   stages declare (FreeU, scale fusion, restrained dilation, NTK-RoPE,
   attention temperature, tiled VAE, the planner's window) inside a
   :class:`~.tracker.SimulationTracker`, the denoiser memoised per stage (see
   :mod:`.harness`).

It returns FLOPs and peak activation bytes per component and stage, plus the
weights of every component, as a JSON-ready dict (:func:`simulate_plan`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from cinescale_post.simulate.build import build_component, param_bytes
from cinescale_post.simulate.configs import ARCHITECTURES
from cinescale_post.simulate.harness import Instrumented, memoised_vae
from cinescale_post.simulate.tracker import SimulationTracker

NOTE_MEMO = ("denoiser: one call simulated per stage (and per dilation state), counted x its steps; "
             "the scheduler loop, re-noise, blend and VAE ran in full on meta tensors")


# ------------------------------------------------------------------ models on meta


def _load_folder_component(sub: Path, dtype: Any) -> Any:
    cfg = json.loads((sub / "config.json").read_text())
    with torch.device("meta"):
        if "_class_name" in cfg:
            import diffusers

            model = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
        else:
            import transformers

            conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"}) \
                if "model_type" in cfg else None
            if conf is None:
                raise ValueError(f"{sub / 'config.json'}: no _class_name or model_type")
            model = getattr(transformers, cfg["architectures"][0])(conf)
    return model.to(dtype).eval().requires_grad_(False)


def meta_components(arch: str | None, folder: str | Path | None, names: tuple[str, ...],
                    dtypes: dict[str, Any]) -> dict[str, Any]:
    """Components ``names`` on meta, from ``folder``'s configs when it has
    them, else from built-in architecture ``arch``. ``dtypes``: per name."""
    out: dict[str, Any] = {}
    for n in names:
        sub = Path(folder) / n if folder else None
        if sub is not None and (sub / "config.json").is_file():
            out[n] = _load_folder_component(sub, dtypes[n])
        elif arch is not None and n in ARCHITECTURES[arch]:
            out[n] = build_component(arch, n, dtypes[n])
        else:
            out[n] = None
    return out


def _scheduler(arch: str | None, folder: Any, name: str):
    sub = Path(folder) / "scheduler" if folder else None
    if sub is not None and (sub / "scheduler_config.json").is_file():
        import diffusers

        cfg = json.loads((sub / "scheduler_config.json").read_text())
        return getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    return build_component(arch or name, "scheduler")


def _folder(plan) -> Path | None:
    opts = dict(plan.backend_options)
    for cand in (opts.get("config"), plan.model):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def default_arch(plan) -> str:
    """The built-in architecture for a plan without model configs."""
    if plan.backend == "sdxl":
        return "sdxl-base"
    if plan.backend == "wan":
        return "wan2.1-t2v-14b" if "14b" in (plan.model or "").lower() else "wan2.1-t2v-1.3b"
    raise ValueError(f"backend {plan.backend!r} has no real-size architecture to simulate; "
                     f"built in: {', '.join(ARCHITECTURES)}")


# ------------------------------------------------------------------ families


def _meta(*shape, dtype):
    return torch.empty(*shape, device="meta", dtype=dtype)


def _attach(backend_id: str, pipe, plan, dtype):
    """(model, driver) for an in-memory pipeline: the plugin's ``Model`` on the
    meta device, driven by the core ``RenderDriver`` as in a render."""
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.render.driver import RenderDriver

    if backend_id == "sdxl":
        from cinescale_sdxl.backend import SDXLAdapter as Adapter, SDXLModel as ModelCls
    else:
        from cinescale_wan.backend import WanAdapter as Adapter, WanModel as ModelCls
    adapter = Adapter()
    driver = RenderDriver(adapter, resolve=builtin_resolve)
    model = ModelCls(pipe, device="meta", dtype=dtype, options=driver.model_plan(plan).options)
    return model, driver.use(model, plan)


def _opt(plan, key: str, default):
    return dict(plan.backend_options).get(key, default)


def _sdxl_model(plan, arch, folder, tracker):
    from diffusers import StableDiffusionXLPipeline

    dtype = getattr(torch, plan.dtype)
    vae_fp32 = _opt(plan, "vae_fp32", "auto")
    vae_fp32 = vae_fp32 is True or (vae_fp32 == "auto" and dtype == torch.float16)  # SDXL VAE: force_upcast
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    comps = meta_components(arch, folder, names, {"unet": dtype, "vae": torch.float32 if vae_fp32 else dtype,
                                                  "text_encoder": dtype, "text_encoder_2": dtype})
    pipe = StableDiffusionXLPipeline(vae=comps["vae"], text_encoder=comps["text_encoder"],
                                     text_encoder_2=comps["text_encoder_2"], tokenizer=None, tokenizer_2=None,
                                     unet=comps["unet"], scheduler=_scheduler(arch, folder, "sdxl-base"))
    model, driver = _attach("sdxl", pipe, plan, dtype)
    return model, driver, comps


def _sdxl_condition(model, driver, comps, tracker, plan, base_size):
    """Both CLIP encoders on (1, 77) token ids, prompt and negative (CFG), as
    ``encode_prompt`` runs them; their penultimate states make the (1, 77,
    2048) embeddings handed to the backend."""
    dtype = model.dtype
    te1, te2 = comps["text_encoder"], comps["text_encoder_2"]
    outs = []
    for _ in range(2):  # prompt, negative prompt
        ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
        with tracker.phase("text_encoder", "prompt"):
            h1 = te1(ids, output_hidden_states=True).hidden_states[-2] if te1 is not None else _meta(1, 77, 768,
                                                                                                       dtype=dtype)
            o2 = te2(ids, output_hidden_states=True) if te2 is not None else None
            h2 = o2.hidden_states[-2] if o2 is not None else _meta(1, 77, 1280, dtype=dtype)
            pooled = o2.text_embeds if o2 is not None else _meta(1, 1280, dtype=dtype)
            outs.append((torch.cat([h1, h2], dim=-1), pooled))
    guidance = max(s.spec.guidance for s in driver.ladder(plan.mode, (plan.output.width, plan.output.height)))
    (pe, pp), (ne, npool) = outs
    return model.condition("", "", size=base_size, guidance=guidance, prompt_embeds=(pe, pp, ne, npool))


def _wan_model(plan, arch, folder, tracker):
    from diffusers import WanPipeline

    dtype = getattr(torch, plan.dtype)
    vae_dtype = torch.float32 if _opt(plan, "vae_dtype", "float32") == "float32" else dtype
    names = ("transformer", "vae", "text_encoder")
    comps = meta_components(arch, folder, names, {"transformer": dtype, "vae": vae_dtype, "text_encoder": dtype})
    pipe = WanPipeline(tokenizer=None, text_encoder=comps["text_encoder"], transformer=comps["transformer"],
                       vae=comps["vae"], scheduler=_scheduler(arch, folder, "wan2.1-t2v-1.3b"))
    model, driver = _attach("wan", pipe, plan, dtype)
    return model, driver, comps


def _wan_condition(model, comps, tracker, plan):
    """UMT5 on (1, 512) token ids for prompt and negative prompt (two CFG passes)."""
    te = comps["text_encoder"]
    n = int(model.options.max_sequence_length)
    embeds = []
    for _ in range(2):
        ids = torch.zeros(1, n, dtype=torch.long, device="meta")
        with tracker.phase("text_encoder", "prompt"):
            if te is not None:
                # no mask: masks are values (transformers reads them), and padding changes no cost
                embeds.append(te(ids).last_hidden_state)
            else:
                embeds.append(_meta(1, n, 4096, dtype=model.model_dtype))
    return model.condition("", "", guidance=5.0, prompt_embeds=(embeds[0], embeds[1]))


# ------------------------------------------------------------------ the run


def _memory_choice(plan) -> dict:
    mem = getattr(plan, "memory", None) or {}
    return dict(mem.get("choice") or {}) if mem.get("available") else {}


def simulate_plan(plan, *, arch: str | None = None, source_size: tuple[int, int] | None = None,
                  explain: bool = False) -> dict:
    """Simulate ``plan`` (a :class:`cinescale_post.pipeline.plan.Plan` for the ``sdxl``
    or ``wan`` backend) at real size on meta tensors; see the module doc.

    ``arch``: built-in architecture when the plan's model folder has no
    configs (default from the backend). ``source_size``: (W, H) of the source
    frames for render plans (default: the probed source's size). ``explain``:
    also list the largest tensors alive at the overall peak (slower).
    Returns ``{"flops", "components": {name: {"flops", "peak_activation_bytes",
    "weights_bytes"}}, "stages": [...], "phases": [...], "notes", "seconds"}``.
    """
    t0 = time.time()
    folder = _folder(plan)
    if folder is None and arch is None:
        arch = default_arch(plan)
    elif folder is not None and arch is None:
        arch = None
    choice = _memory_choice(plan)
    tracker = SimulationTracker(explain=explain)
    out = (int(plan.output.width), int(plan.output.height))
    notes = [NOTE_MEMO, "attention: fused SDPA kernels (flash; memory-efficient with a mask), no score matrix",
             "values: meta tensors have none; random draws and schedule numbers are placeholders of the real shapes"]
    with torch.inference_mode():
        if plan.backend == "sdxl":
            model, driver, comps = _sdxl_model(plan, arch or "sdxl-base", folder, tracker)
        elif plan.backend == "wan":
            model, driver, comps = _wan_model(plan, arch or default_arch(plan), folder, tracker)
        else:
            raise ValueError(f"backend {plan.backend!r}: only sdxl and wan plans can be simulated")
        f = model.model_info.latent_factor
        if choice:
            # offload moves weights between devices (no meaning for meta tensors): it is accounted
            # in the resident weights of the comparison, not applied
            desc = model.apply_memory_choice({**choice, "offload": "none"})
            if desc:
                notes.append(f"planner's choice applied: {desc}")
            if choice.get("offload", "none") != "none":
                notes.append(f"offload {choice['offload']}: counted as weights resident per component, not run")
        with tracker:
            ins = Instrumented(model, tracker, latent_factor=f)
            with ins.install(), memoised_vae(comps["vae"], tracker) as vae_memo:
                if plan.backend == "sdxl":
                    res = _run_sdxl(model, driver, comps, tracker, plan, out, source_size)
                else:
                    res = _run_wan(model, driver, comps, tracker, plan, out, source_size, choice, notes)
    notes.append("VAE: each distinct encoder/decoder call (tile shape, causal-cache state) simulated once: "
                 + ", ".join(f"{k} {m.real_calls} of {m.calls} calls" for k, m in vae_memo.items() if m.calls))
    weights = {k: param_bytes(v) for k, v in comps.items() if v is not None}
    return _summarise(tracker, weights, ins, res, notes, time.time() - t0, plan)


def _run_sdxl(model, driver, comps, tracker, plan, out, source_size):
    from cinescale_post.cascade.sources import RandomSources, StageResult

    info = model.model_info
    stages = driver.ladder(plan.mode, out)
    base = stages[0].size if plan.mode == "generate" else (source_size or _source_size(plan))
    cond = _sdxl_condition(model, driver, comps, tracker, plan, base)
    rng = RandomSources.from_seed(int(plan.seed), jitter=bool(_opt(plan, "jitter", True)),
                                  posterior=_opt(plan, "posterior", "sample"))
    init = None
    if plan.mode == "render":  # one frame of the shot: the source is the base stage
        w, h = source_size or _source_size(plan)
        init = StageResult(size=(w, h), pixels=_meta(1, 3, h, w, dtype=model.vae_dtype or model.dtype))
    if driver is model:  # pre-issue-13: the backend drives the core ladder itself
        from cinescale_post.cascade.ladder import run_ladder

        res = run_ladder(model, stages, cond, rng, init=init, freeu=model.freeu_spec(), mask=None)[-1]
    else:
        res = driver.run_cascade(stages, cond, rng, init=init)[-1]
    model.decode(res.latent)
    return {"stages": [_stage_row(s, info) for s in stages], "frames": 1}


def _run_wan(model, driver, comps, tracker, plan, out, source_size, choice, notes):
    from cinescale_post.cascade.sources import StageResult

    info = model.model_info
    stages = driver.ladder(plan.mode, out)
    cond = _wan_condition(model, comps, tracker, plan)
    t = int(info.temporal_factor)
    if plan.mode == "generate":
        frames = int(_opt(plan, "num_frames", 81))
        init = None
    else:
        win = int(choice.get("window") or plan.window.size)
        frames = ((max(1, win) - 1 + t - 1) // t) * t + 1  # 4k+1, as the driver pads a window
        w, h = source_size or _source_size(plan)
        w, h = w - w % info.size_multiple, h - h % info.size_multiple
        init = StageResult(size=(w, h), pixels=_meta(1, 3, frames, h, w, dtype=torch.float32))
        notes.append(f"render window: {frames} frames of {w}x{h} source")
    f_lat = (frames - 1) // t + 1
    rng = driver.video_sources(int(plan.seed), stages, f_lat)
    res = driver.run_cascade(stages, cond, rng, init=init, frames=f_lat)[-1]
    model.decode(res.latent)
    return {"stages": [_stage_row(s, info) for s in stages], "frames": frames}


def _source_size(plan) -> tuple[int, int]:
    src = getattr(plan, "source", None)
    if src is None or not getattr(src, "width", None):
        raise ValueError("a render plan needs its source size (source_size=...)")
    return int(src.width), int(src.height)


def _stage_row(stage, info) -> dict:
    return {"index": stage.index, "size": list(stage.size), "steps": stage.spec.steps,
            "restart_index": stage.restart_index, "denoiser_calls": stage.spec.steps - stage.restart_index,
            "dilation": stage.dilation, "fusion": stage.fusion}


def _summarise(tracker, weights, ins, res, notes, seconds, plan) -> dict:
    comps: dict[str, dict] = {}
    for rec in tracker.records.values():
        c = comps.setdefault(rec.component, {"flops": 0, "peak_activation_bytes": 0, "calls": 0})
        c["flops"] += rec.flops
        c["calls"] += rec.calls
        c["peak_activation_bytes"] = max(c["peak_activation_bytes"], rec.peak_live)
    stages = res["stages"]
    for row in stages:
        label = f"{row['size'][0]}x{row['size'][1]}"
        for comp in ("denoiser", "vae.encode", "vae.decode"):
            rec = tracker.records.get((comp, label))
            if rec is not None:
                row[comp] = {"flops": rec.flops, "calls": rec.calls, "peak_activation_bytes": rec.peak_live}
        row["denoiser_simulated_calls"] = ins.simulated.get(label, 0)
    return {"backend": plan.backend, "dtype": plan.dtype, "mode": plan.mode, "frames": res["frames"],
            "flops": tracker.total_flops, "peak_activation_bytes": tracker.peak, "components": comps,
            "weights_bytes": weights, "stages": stages, "phases": [r.to_dict() for r in tracker.records.values()],
            "notes": notes, "simulation_seconds": round(seconds, 1),
            "peak_contents": [{"bytes": c[0], "op": c[1], "shape": list(c[2]), "dtype": c[3]}
                              for c in tracker.peak_contents[:24]]}


__all__ = ["NOTE_MEMO", "default_arch", "meta_components", "simulate_plan"]
