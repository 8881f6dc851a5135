"""Tiny, randomly initialised SDXL-architecture models: the smoke test's
model (``SDXLAdapter.tiny_model``) and the plugin's tests.

Everything is built from config dicts in code (no downloads, no weights in
the repository; the VAE and CLIP text configs and the tokenizer are the test
kit's, ``cinescale_post.testing.tiny``); :func:`save_tiny_sdxl` writes a real diffusers folder
(``model_index.json``, ``unet/``, ``vae/``...) that the adapter loads with
``from_pretrained(local_files_only=True)``.

The layout mirrors SDXL so patch points keep their real names: a plain
``DownBlock2D`` then two ``CrossAttnDownBlock2D``, a cross-attention mid block,
``text_time`` micro-conditioning, two CLIP text encoders whose hidden states
are concatenated, a 4-level VAE (scale factor 8) and SDXL's Euler scheduler.
Base size: ``sample_size (8) * 8 = 64`` pixels, so a ladder 64 -> 128 -> 256
plays the role of 1024 -> 2048 -> 4096.

Example::

    from cinescale_sdxl.tiny import save_tiny_sdxl
    path = save_tiny_sdxl(tmp_path / "tiny-sdxl")   # ~14 MB, < 1 s
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cinescale_post.testing.tiny import (TINY_TEXT_CONFIG, TINY_VAE_CONFIG, tiny_clip_text_config, tiny_clip_vocab,
                                         tiny_tokenizer)

TINY_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 48, 64),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(2, 4, 4),
    transformer_layers_per_block=(1, 1, 2),
    use_linear_projection=True,
    cross_attention_dim=64,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 32,
    norm_num_groups=8,
)

# SDXL base 1.0's scheduler settings (EulerDiscrete, leading spacing, offset 1).
SDXL_SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    interpolation_type="linear",
    steps_offset=1,
    timestep_spacing="leading",
    use_karras_sigmas=False,
)

def build_tiny_sdxl(seed: int = 0, *, text_encoders: bool = True, dtype=None) -> dict[str, Any]:
    """Components for ``StableDiffusionXLPipeline(**components)``, random
    weights seeded with ``seed``, in eval mode."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**TINY_VAE_CONFIG).eval()
    comps: dict[str, Any] = dict(unet=unet, vae=vae, scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER_CONFIG),
                                 tokenizer=None, tokenizer_2=None, text_encoder=None, text_encoder_2=None)
    if text_encoders:
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        tok = tiny_tokenizer()
        cfg = tiny_clip_text_config(tok)
        torch.manual_seed(seed + 2)
        te1 = CLIPTextModel(cfg).eval()
        torch.manual_seed(seed + 3)
        te2 = CLIPTextModelWithProjection(cfg).eval()
        comps.update(tokenizer=tok, tokenizer_2=tiny_tokenizer(), text_encoder=te1, text_encoder_2=te2)
    if dtype is not None:
        for k in ("unet", "vae", "text_encoder", "text_encoder_2"):
            if comps[k] is not None:
                comps[k] = comps[k].to(dtype)
    return comps


def save_tiny_sdxl(path: str | Path, seed: int = 0, *, text_encoders: bool = True) -> Path:
    """Build the tiny SDXL model and ``save_pretrained`` it (safetensors) into
    ``path``; returns the folder."""
    from diffusers import StableDiffusionXLPipeline

    path = Path(path)
    pipe = StableDiffusionXLPipeline(**build_tiny_sdxl(seed, text_encoders=text_encoders))
    pipe.save_pretrained(path, safe_serialization=True)
    meta = path / "cinescale_tiny.json"
    meta.write_text(json.dumps({"kind": "tiny-sdxl", "seed": seed, "text_encoders": text_encoders}))
    return path


def tiny_prompt_embeds(batch: int = 1, seed: int = 0, dtype=None):
    """(prompt_embeds (B, 77, 64), pooled (B, 32)) random, for runs without text encoders."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    pe = torch.randn(batch, 77, 64, generator=g)
    pooled = torch.randn(batch, 32, generator=g)
    if dtype is not None:
        pe, pooled = pe.to(dtype), pooled.to(dtype)
    return pe, pooled


__all__ = ["SDXL_SCHEDULER_CONFIG", "TINY_TEXT_CONFIG", "TINY_UNET_CONFIG", "TINY_VAE_CONFIG",
           "build_tiny_sdxl", "save_tiny_sdxl", "tiny_clip_vocab", "tiny_prompt_embeds", "tiny_tokenizer"]
