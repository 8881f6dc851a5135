"""Loading SDXL weights (a diffusers folder or one ``.safetensors`` file,
never a pickle, never a download) and SDXL's memory profile from the folder's
configs (no weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cinescale_post.api import MemoryProfile, MemoryStage, ModelPlan, loader_errors, local_weights

from .options import SDXLOptions


def memory_profile(plan: ModelPlan) -> MemoryProfile | str:
    """Components and per-stage demand from the model folder's configs."""
    opts: SDXLOptions = plan.options
    from cinescale_post.api import memory as mm

    folder = Path(opts.config or plan.model or "")
    if not folder.is_dir() or not (folder / "unet" / "config.json").is_file():
        return (f"no diffusers configs at {str(folder) or '(no model)'} "
                "(set backend_options.config for a single .safetensors file)")
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
    cross = plan.driver_options.get("cross_frame", False) or any(dict(s).get("fusion") == "cross-frame" for s in plan.stages)
    kernel = "efficient"  # diffusers' AttnProcessor2_0: SDPA flash / memory-efficient
    chans = list(vae_cfg["block_out_channels"])

    def stage(size, st):
        w, h = size
        cfg_rows = 2 if (st.spec.guidance > 1.0 and unet_cfg.get("time_cond_proj_dim") is None) else 1
        batch = cfg_rows * (2 if cross else 1)
        lat = (h // f, w // f)

        def vae(tile, window):
            t = (w, h) if tile is None else (min(tile, w), min(tile, h))
            return mm.vae_bytes(t, chans, vae_elem, out_size=(w, h) if tile is not None else None,
                                latent_factor=f, kernel=kernel)

        return MemoryStage(lambda window: mm.unet_activation_bytes(unet_cfg, lat, batch, elem, kernel=kernel,
                                                               freeu=bool(opts.freeu)),
                           vae, {"latent": [lat[1], lat[0]], "unet_batch": batch})

    s0 = int(vae_cfg.get("sample_size", base))
    tiles = ([] if opts.vae_tiling else [None]) + [t for t in (s0, s0 // 2, s0 // 4) if t >= 2 * f]
    offloads = ("none",) if str(plan.device).startswith("cpu") else ("none", "model", "sequential")
    return MemoryProfile(comps, (base, base), f, stage, tiles=tiles or [None], offloads=offloads, windows=(1,),
                         denoisers=("unet",),
                         facts={"vae_dtype": "float32" if vae_fp32 else plan.dtype, "attention_kernel": kernel,
                                "note": "SDXL renders frame by frame: the window size does not change device "
                                        "memory"})


def load_pipeline(model: str | None, dtype: Any, *, config: str | None = None):
    """Load an SDXL pipeline from a local diffusers folder (safetensors only)
    or a single ``.safetensors`` file. Never unpickles, never downloads."""
    p = local_weights(model, "sdxl", kinds="a diffusers SDXL folder or a .safetensors file",
                      folder_holds="unet/ and vae/")
    from diffusers import StableDiffusionXLPipeline

    with loader_errors("SDXL", p, "for a single file, set backend_options.config to a diffusers SDXL folder with the "
                                  "configs; check the files are complete safetensors"):
        if p.is_dir():
            return StableDiffusionXLPipeline.from_pretrained(str(p), dtype=dtype, local_files_only=True,
                                                             use_safetensors=True)
        kw: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if config:
            kw["config"] = config
        return StableDiffusionXLPipeline.from_single_file(str(p), **kw)


__all__ = ["load_pipeline", "memory_profile"]
