"""Wan's memory facts: the profile the core's planner estimates from (configs
only, no weights) and the cheaper live settings its out-of-memory back-off
walks through (``Model.memory_steps`` / ``apply_memory``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cinescale_post.api import MemoryProfile, MemoryStage, ModelPlan

from .options import WanOptions, in_model_dtype

COMPONENTS = ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder")


def memory_profile(plan: ModelPlan) -> MemoryProfile | str:
    """Components and per-stage DiT/VAE demand from the folder's configs."""
    opts: WanOptions = plan.options
    from cinescale_post.api import memory as mm

    folder = Path(opts.config or plan.model or "")
    tr_dir = folder / "transformer"
    if not folder.is_dir() or not (tr_dir / "config.json").is_file():
        return (f"no diffusers Wan configs at {str(folder) or '(no model)'} "
                "(set backend_options.config for a single .safetensors file)")
    elem = mm.dtype_bytes(plan.dtype)
    vae_dt = plan.dtype if in_model_dtype(opts.vae_dtype, plan.device) else "float32"
    tcfg = json.loads((tr_dir / "config.json").read_text())
    vcfg = json.loads((folder / "vae" / "config.json").read_text())
    comps = [c for c in (mm.component_from_folder(n, folder / n, vae_dt if n == "vae" else plan.dtype)
                         for n in COMPONENTS) if c is not None]
    if plan.model and Path(plan.model).is_file():  # single transformer file: its headers
        n, big = mm.safetensors_params(plan.model)
        comps = [mm.Component("transformer", n * elem, big * elem)] + [c for c in comps if c.name != "transformer"]
    lf = int(vcfg.get("scale_factor_spatial", 8) or 8)
    tf = int(vcfg.get("scale_factor_temporal", 4) or 4)
    patch = tuple(tcfg["patch_size"])
    heads, hd = int(tcfg["num_attention_heads"]), int(tcfg["attention_head_dim"])
    dim = heads * hd
    if plan.mode == "render":
        k = max(int(plan.window), 1)
        while (k - 1) % 4:
            k += 1
        full = k
        windows = sorted({full} | {n for n in (41, 21, 9, 5) if n < full}, reverse=True)
    else:
        full = int(plan.driver_options.get("num_frames", 81))
        windows = [full]
    cp = plan.driver_options.get("context_parallel") or {}
    world = max(1, int(cp.get("ulysses", 1) or 1)) * max(1, int(cp.get("ring", 1) or 1))
    batch = 2 if opts.cfg_batch else 1
    kernel = "efficient"
    base_dim = int(vcfg.get("decoder_base_dim") or vcfg.get("base_dim", 96))
    chans = [base_dim * int(m) for m in vcfg.get("dim_mult", [1, 2, 4, 4])]

    def stage(size, st):
        w, h = size

        def denoise(window):
            n = mm.dit_tokens(window, (w, h), latent_factor=lf, temporal_factor=tf, patch=patch)
            return mm.dit_activation_bytes(n, dim, heads, int(tcfg["ffn_dim"]), batch, elem,
                                           text_tokens=opts.max_sequence_length, kernel=kernel, world=world)

        def vae(tile, window):  # tiles as apply_memory_choice sets them: stride 3/4 of the tile
            return mm.video_vae_bytes((w, h), window, chans, mm.dtype_bytes(vae_dt),
                                      tile=None if tile is None else (tile, tile),
                                      stride=None if tile is None else (tile * 3 // 4, tile * 3 // 4),
                                      latent_factor=lf, temporal_factor=tf, kernel=kernel)

        return MemoryStage(denoise, vae, {"tokens_full_window": mm.dit_tokens(
            full, (w, h), latent_factor=lf, temporal_factor=tf, patch=patch), "cfg_batch": batch,
            "context_parallel": world})

    t0 = int(opts.vae_tile[0])
    tiles = ([None] if not opts.vae_tiling else []) + [t for t in (t0, t0 * 3 // 4, t0 // 2) if t >= 64]
    return MemoryProfile(comps, (832, 480) if dim <= 1536 else (1280, 720), lf * int(patch[-1]), stage,
                         tiles=tiles or [None], windows=windows, denoisers=("transformer", "transformer_2"),
                         offloads=("none",) if str(plan.device).startswith("cpu") else ("none", "model"),
                         facts={"vae_dtype": vae_dt, "attention_kernel": kernel,
                                "note": "window = DiT frames per render window (4k+1); offload 'sequential' is "
                                        "not offered by this backend"})


def set_tiles(vae: Any, tile, stride) -> None:
    vae.enable_tiling(tile_sample_min_height=tile[0], tile_sample_min_width=tile[1],
                      tile_sample_stride_height=stride[0], tile_sample_stride_width=stride[1])


def memory_steps(model: Any) -> list:
    """VAE tiling on, then VAE tiles of 3/4 and 1/2 of the preset's (stride
    3/4 of the tile, never under 64 px), then ``offload = "model"``
    (accelerators only)."""
    vae, opts = model.pipe.vae, model.options
    if not getattr(vae, "use_tiling", False):
        return [("tiling", tuple(opts.vae_tile))]
    first = opts.vae_tile
    cur = (int(vae.tile_sample_min_height), int(vae.tile_sample_min_width))
    steps: list = []
    for frac in ((3, 4), (1, 2)):
        nxt = (first[0] * frac[0] // frac[1], first[1] * frac[0] // frac[1])
        if nxt[0] < cur[0] and min(nxt) >= 64:
            steps.append(("tile", nxt))
    if opts.offload == "none" and model.device.type != "cpu":
        steps.append(("offload", "model"))
    return steps


def apply_memory(model: Any, step) -> str:
    kind, value = step
    if kind == "tiling":
        set_tiles(model.pipe.vae, value, model.options.vae_stride)
        model.options = dataclasses.replace(model.options, vae_tiling=True)
        return f"VAE tiling on ({value[0]}x{value[1]} px tiles)"
    if kind == "tile":
        set_tiles(model.pipe.vae, value, (value[0] * 3 // 4, value[1] * 3 // 4))
        return f"VAE tiles of {value[0]}x{value[1]} px"
    model.options = dataclasses.replace(model.options, offload="model")
    model.slot.offload_all(getattr(model.pipe, n, None) for n in COMPONENTS)
    return "model CPU offload (one component on the device at a time, kept until another needs it)"


def apply_memory_choice(model: Any, choice) -> str | None:
    """VAE tile size and model offload chosen by the planner; what changed."""
    vae = model.pipe.vae
    done = []
    tile = choice.get("vae_tile")
    if tile:
        t = int(tile)
        before = (bool(getattr(vae, "use_tiling", False)), getattr(vae, "tile_sample_min_height", None),
                  getattr(vae, "tile_sample_min_width", None))
        set_tiles(vae, (t, t), (t * 3 // 4, t * 3 // 4))
        model.options = dataclasses.replace(model.options, vae_tiling=True)
        if before != (True, t, t):
            done.append(f"VAE tiles of {t}x{t} px")
    if choice.get("offload") == "model" and model.options.offload == "none" and model.device.type != "cpu":
        apply_memory(model, ("offload", "model"))
        done.append("model CPU offload")
    return ", ".join(done) or None


__all__ = ["COMPONENTS", "apply_memory", "apply_memory_choice", "memory_profile", "memory_steps", "set_tiles"]
