"""The cascade engine: the one denoising loop and the stage ladder.

Importing this package is light (no torch, no diffusers): the stage specs
(:mod:`.stages`), the driver's options (:mod:`.options`) and the render driver
(:mod:`.driver`) are plain Python at import; the loop (:mod:`.loop`),
scheduler helpers (:mod:`.schedule`) and upscaling (:mod:`.upscale`) import
torch when first used. The model contract is :mod:`cinescale_post.adapter`.
"""

from __future__ import annotations

from cinescale_post.cascade.stages import ResolvedStage, StageSpec, default_stages, parse_stages, resolve_ladder

_LAZY = {
    "RandomSources": "loop", "StageResult": "loop", "denoise": "loop", "run_ladder": "loop", "run_stage": "loop",
    "add_noise_at": "schedule", "cosine_blend": "schedule", "cosine_factor": "schedule",
    "renoise_trajectory": "schedule", "flow_sigmas": "schedule", "stage_scheduler": "schedule",
    "resize": "upscale", "upscale_latent": "upscale",
    "refine_frames": "run", "refine_video": "run", "generate_images": "run", "to_pixels": "run",
    "to_images": "run", "fit_frames": "run", "video_to_pixels": "run", "RenderDriver": "driver",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ResolvedStage", "StageSpec", "default_stages",
           "parse_stages", "resolve_ladder", *_LAZY]
