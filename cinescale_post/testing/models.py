"""Tiny, randomly initialised models for the core's tests (an SDXL-layout
UNet/VAE driving the cascade without any plugin, and the SD 1.5 layout of the
template plugin). The SDXL and Wan plugins ship their own factories
(``cinescale_sdxl.tiny``, ``cinescale_wan.tiny``), which their smoke tests use.

Importable by plugin authors. Everything is built from config dicts in code
(no downloads, no weights in the repository); :func:`save_tiny_sdxl` writes a
real diffusers folder (``model_index.json``, ``unet/``, ``vae/``...) that the
SDXL backend loads with ``from_pretrained(local_files_only=True)``.

The layout mirrors SDXL so patch points keep their real names: a plain
``DownBlock2D`` then two ``CrossAttnDownBlock2D``, a cross-attention mid block,
``text_time`` micro-conditioning, two CLIP text encoders whose hidden states
are concatenated, a 4-level VAE (scale factor 8) and SDXL's Euler scheduler.
Base size: ``sample_size (8) * 8 = 64`` pixels, so a ladder 64 -> 128 -> 256
plays the role of 1024 -> 2048 -> 4096.

Example::

    from cinescale_post.testing.models import save_tiny_sdxl  # or cinescale_sdxl.tiny
    path = save_tiny_sdxl(tmp_path / "tiny-sdxl")   # ~14 MB, < 1 s
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        tok = tiny_tokenizer()
        cfg = CLIPTextConfig(vocab_size=len(tok), eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                             pad_token_id=tok.pad_token_id, **TINY_TEXT_CONFIG)
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


# ------------------------------------------------------------------ a minimal cascade backend


def tiny_unet_model(seed: int = 0, *, device: str = "cpu"):
    """A minimal :class:`~cinescale_post.api.Model` over the tiny SDXL-layout
    UNet/VAE with random prompt embeddings (no text encoders): enough to
    drive the core cascade in tests without any backend plugin."""
    import copy

    import torch

    from ..adapter import Model, ModelInfo, PatchPoints
    from ..ops.dilation import SDXL_DILATED_CONVS

    comps = build_tiny_sdxl(seed, text_encoders=False)

    class TinyUNetModel(Model):
        id = "tiny-unet"

        def __init__(self):
            self.unet = comps["unet"].to(device)
            self.vae = comps["vae"].to(device)
            self.scheduler = comps["scheduler"]
            self.device = torch.device(device)
            self.dtype = torch.float32

        @property
        def model_info(self):
            return ModelInfo(base_size=(64, 64), latent_factor=8, latent_channels=4, size_multiple=32)

        @property
        def patch_points(self):
            return PatchPoints(dilate_convs=SDXL_DILATED_CONVS,
                               fusion_attention=("*transformer_blocks.*.attn1.processor",), freeu=True)

        @property
        def denoiser(self):
            return self.unet

        def make_scheduler(self, stage=None):
            return copy.deepcopy(self.scheduler)

        def encode(self, pixels, *, generator=None, sample=True):
            dist = self.vae.encode(pixels.to(self.device)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
            return z * self.vae.config.scaling_factor

        def decode(self, latents):
            return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

        def condition(self, prompt, negative_prompt="", *, size, guidance, image=None):
            pe, pooled = tiny_prompt_embeds(1, seed=len(prompt))
            npe, npooled = torch.zeros_like(pe), torch.zeros_like(pooled)
            w, h = size
            ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32)
            return {"pe": torch.cat([npe, pe]), "pooled": torch.cat([npooled, pooled]),
                    "ids": torch.cat([ids, ids]), "pos": (pe, pooled, ids)}

        def predict(self, x, t, cond, *, guidance):
            with torch.no_grad():
                out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=cond["pe"],
                                added_cond_kwargs={"text_embeds": cond["pooled"], "time_ids": cond["ids"]},
                                return_dict=False)[0]
            u, c = out.chunk(2)
            return u + guidance * (c - u)

    return TinyUNetModel()


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
        from transformers import CLIPTextConfig, CLIPTextModel

        tok = tiny_tokenizer()
        cfg = CLIPTextConfig(vocab_size=len(tok), eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                             pad_token_id=tok.pad_token_id, **TINY_TEXT_CONFIG)
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


__all__ += ["SD15_SCHEDULER_CONFIG", "TINY_SD15_UNET_CONFIG", "TINY_SD15_VAE_CONFIG", "build_tiny_sd15",
            "save_tiny_sd15"]
