"""Simulate one plan: real-size models on meta, the project's backend and cascade driver, the tracker.

This is the thin layer between the simulation kit (configs, meta builders,
tracker, scheduler shim) and the render code. It

1. builds every component of the plan's model from its configs on the meta
   device (:func:`meta_components`: a diffusers folder's ``config.json`` files
   -- ``--model`` or ``backend_options.config`` -- or a built-in architecture
   of :mod:`.configs`; no weights are read);
2. hands them to the plan's adapter (its declared
   :class:`~cinescale_post.contracts.simulation.MetaBuild`: the same model code
   that renders), on device ``"meta"`` with the plan's dtype, options and the
   memory planner's choice (VAE tile, window);
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

from cinescale_post.contracts.errors import UsageError
from cinescale_post.render.driver import RenderDriver
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


def _scheduler(arch: str, folder: Any):
    sub = Path(folder) / "scheduler" if folder else None
    if sub is not None and (sub / "scheduler_config.json").is_file():
        import diffusers

        cfg = json.loads((sub / "scheduler_config.json").read_text())
        return getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    return build_component(arch, "scheduler")


def _folder(plan) -> Path | None:
    opts = dict(plan.backend_options)
    for cand in (opts.get("config"), plan.model):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def _meta(*shape, dtype):
    return torch.empty(*shape, device="meta", dtype=dtype)


def _opt(plan, key: str, default):
    return dict(plan.backend_options).get(key, default)


def meta_model(plan, host, arch: str | None = None):
    """(model, driver, components, build): the plan's model at real size on meta,
    built by its adapter's :class:`~cinescale_post.contracts.simulation.MetaBuild`
    and driven by the core render driver, as in a render."""
    driver = host.backend(plan.backend)
    build = driver.adapter.meta_build() if isinstance(driver, RenderDriver) else None
    if build is None:
        raise UsageError(f"backend {plan.backend!r} cannot be simulated (its adapter declares no meta_build)",
                         fix="drop --simulate; --dry-run alone still prints the plan and the memory estimate")
    mp = driver.model_plan(plan, device="meta")
    arch = arch or build.architecture(mp)
    if arch not in ARCHITECTURES:
        raise UsageError(f"backend {plan.backend!r} names architecture {arch!r}, which is not built in",
                         fix=f"built in: {', '.join(ARCHITECTURES)}")
    folder = _folder(plan)
    dtypes = {n: getattr(torch, d) for n, d in build.component_dtypes(mp).items()}
    comps = meta_components(arch, folder, tuple(dtypes), dtypes)
    model = build.assemble(mp, comps, _scheduler(arch, folder))
    return model, driver.use(model, plan), comps, build


def _memory_choice(plan) -> dict:
    mem = getattr(plan, "memory", None) or {}
    return dict(mem.get("choice") or {}) if mem.get("available") else {}


def simulate_plan(plan, host, *, arch: str | None = None, source_size: tuple[int, int] | None = None,
                  explain: bool = False) -> dict:
    """Simulate ``plan`` (a :class:`cinescale_post.pipeline.plan.Plan` whose
    adapter declares a ``meta_build``, found through ``host``) at real size on
    meta tensors; see the module doc.

    ``arch``: built-in architecture when the plan's model folder has no
    configs (default: the adapter's ``MetaBuild.architecture``). ``source_size``: (W, H) of the source
    frames for render plans (default: the probed source's size). ``explain``:
    also list the largest tensors alive at the overall peak (slower).
    Returns ``{"flops", "components": {name: {"flops", "peak_activation_bytes",
    "weights_bytes"}}, "stages": [...], "phases": [...], "notes", "seconds"}``.
    """
    t0 = time.time()
    choice = _memory_choice(plan)
    tracker = SimulationTracker(explain=explain)
    out = (int(plan.output.width), int(plan.output.height))
    notes = [NOTE_MEMO, "attention: fused SDPA kernels (flash; memory-efficient with a mask), no score matrix",
             "values: meta tensors have none; random draws and schedule numbers are placeholders of the real shapes"]
    with torch.inference_mode():
        model, driver, comps, build = meta_model(plan, host, arch)
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
                stages = driver.ladder(plan.mode, out)
                if int(model.model_info.temporal_factor) > 1:
                    res = _run_video(model, driver, build, comps, tracker, plan, stages, source_size, choice, notes)
                else:
                    res = _run_image(model, driver, build, comps, tracker, plan, stages, source_size)
    notes.append("VAE: each distinct encoder/decoder call (tile shape, causal-cache state) simulated once: "
                 + ", ".join(f"{k} {m.real_calls} of {m.calls} calls" for k, m in vae_memo.items() if m.calls))
    weights = {k: param_bytes(v) for k, v in comps.items() if v is not None}
    return _summarise(tracker, weights, ins, res, notes, time.time() - t0, plan)


def _condition(model, build, comps, tracker, stages, size):
    guidance = max(s.spec.guidance for s in stages)
    return build.condition(model, comps, size=size, guidance=guidance,
                           phase=lambda: tracker.phase("text_encoder", "prompt"))


def _run_image(model, driver, build, comps, tracker, plan, stages, source_size):
    from cinescale_post.cascade.sources import RandomSources, StageResult

    info = model.model_info
    base = stages[0].size if plan.mode == "generate" else (source_size or _source_size(plan))
    cond = _condition(model, build, comps, tracker, stages, base)
    rng = RandomSources.from_seed(int(plan.seed), jitter=bool(_opt(plan, "jitter", True)),
                                  posterior=_opt(plan, "posterior", "sample"))
    init = None
    if plan.mode == "render":  # one frame of the shot: the source is the base stage
        w, h = source_size or _source_size(plan)
        init = StageResult(size=(w, h), pixels=_meta(1, 3, h, w, dtype=model.vae_dtype or model.dtype))
    res = driver.run_cascade(stages, cond, rng, init=init)[-1]
    model.decode(res.latent)
    return {"stages": [_stage_row(s, info) for s in stages], "frames": 1}


def _run_video(model, driver, build, comps, tracker, plan, stages, source_size, choice, notes):
    from cinescale_post.cascade.sources import StageResult

    info = model.model_info
    base = stages[0].size if plan.mode == "generate" else (source_size or _source_size(plan))
    cond = _condition(model, build, comps, tracker, stages, base)
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


__all__ = ["NOTE_MEMO", "meta_components", "meta_model", "simulate_plan"]
