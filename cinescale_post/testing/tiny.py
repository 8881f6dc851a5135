"""Tiny, randomly initialised models for tests, written once: the tiny VAE
and CLIP text configs and the tiny CLIP tokenizer (the SDXL plugin's
``cinescale_sdxl.tiny`` builds on them too), and the SD 1.5 layout of the
template plugin (``plugins/cinescale-example``): :func:`build_tiny_sd15`,
and :func:`save_tiny_sd15`, which writes a real diffusers folder
(``model_index.json``, ``unet/``, ``vae/``...) that the example backend loads
with ``from_pretrained(local_files_only=True)``. Everything is built from
config dicts in code (no downloads, no weights in the repository).

Example::

    from cinescale_post.testing.tiny import save_tiny_sd15
    path = save_tiny_sd15(tmp_path / "tiny-sd15")   # ~6 MB, < 1 s

Public: plugins may import this module (the one ``cinescale_post`` module
besides ``cinescale_post.api`` their code may import) for the tiny models of
their tests and of ``ModelAdapter.tiny_model``. It imports nothing of the
core and no torch at import time. Random weights prove wiring and
arithmetic, never picture quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 32, 32),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.13025,
    force_upcast=True,
)

TINY_TEXT_CONFIG: dict[str, Any] = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=3,
    num_attention_heads=4,
    projection_dim=32,
    max_position_embeddings=77,
    hidden_act="gelu",
)

_MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "o f</w>", "p h", "ph o", "pho t", "phot o</w>",
           "d o", "do g</w>", "a </w>".replace(" </w>", "</w>")]


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-format BPE vocabulary (byte symbols, their ``</w>`` forms, a few
    merges, then ``<|startoftext|>``/``<|endoftext|>``) and its merges."""
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges = [m for m in _MERGES if " " in m]
    for m in merges:
        a, b = m.split(" ")
        if a + b not in tokens:
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = tiny_clip_vocab()
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], model_max_length=77)


def tiny_clip_text_config(tokenizer: Any):
    """A ``CLIPTextConfig`` of :data:`TINY_TEXT_CONFIG` sized to ``tokenizer``."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                          bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                          **TINY_TEXT_CONFIG)


# ------------------------------------------------------------------ SD 1.5 layout (template plugin)
#
# A tiny Stable Diffusion 1.5-style model: one CLIP text encoder whose hidden
# states are the cross-attention context, a UNet with attention at full
# latent resolution (CrossAttnDownBlock2D first, a plain DownBlock2D last),
# no micro-conditioning, a 4-level VAE with SD 1.5's scaling factor and
# SD 1.5's noise schedule. Base size: sample_size (8) * 8 = 64 pixels (plays
# the part of 512). Used by ``plugins/cinescale-example`` and its tests.

TINY_SD15_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=8,
    cross_attention_dim=32,
    norm_num_groups=8,
)

TINY_SD15_VAE_CONFIG: dict[str, Any] = {**TINY_VAE_CONFIG, "scaling_factor": 0.18215, "force_upcast": False}

# Stable Diffusion 1.5's training schedule, as a DDIM scheduler config.
SD15_SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)


def build_tiny_sd15(seed: int = 0, *, text_encoder: bool = True) -> dict[str, Any]:
    """Components for ``StableDiffusionPipeline(**components)`` (SD 1.5
    layout), random weights seeded with ``seed``, in eval mode; no safety
    checker."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_SD15_UNET_CONFIG).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**TINY_SD15_VAE_CONFIG).eval()
    comps: dict[str, Any] = dict(unet=unet, vae=vae, scheduler=DDIMScheduler(**SD15_SCHEDULER_CONFIG),
                                 tokenizer=None, text_encoder=None, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)
    if text_encoder:
        from transformers import CLIPTextModel

        tok = tiny_tokenizer()
        cfg = tiny_clip_text_config(tok)
        torch.manual_seed(seed + 2)
        comps.update(tokenizer=tok, text_encoder=CLIPTextModel(cfg).eval())
    return comps


def save_tiny_sd15(path: str | Path, seed: int = 0, *, text_encoder: bool = True) -> Path:
    """Build the tiny SD 1.5-style model and ``save_pretrained`` it
    (safetensors) into ``path`` (~6 MB, < 1 s); returns the folder."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    pipe = StableDiffusionPipeline(**build_tiny_sd15(seed, text_encoder=text_encoder))
    pipe.save_pretrained(path, safe_serialization=True)
    (path / "cinescale_tiny.json").write_text(json.dumps({"kind": "tiny-sd15", "seed": seed,
                                                          "text_encoder": text_encoder}))
    return path


__all__ = ["SD15_SCHEDULER_CONFIG", "TINY_SD15_UNET_CONFIG", "TINY_SD15_VAE_CONFIG", "TINY_TEXT_CONFIG", "TINY_VAE_CONFIG",
           "build_tiny_sd15", "save_tiny_sd15", "tiny_clip_text_config", "tiny_clip_vocab", "tiny_tokenizer"]
