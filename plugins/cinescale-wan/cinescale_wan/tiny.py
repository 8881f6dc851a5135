"""Tiny, randomly initialised Wan-architecture models for the smoke test (``WanAdapter.tiny_model``), tests
and CPU benchmarks (no downloads, no weights in the repository).

Everything is built from config dicts; :func:`save_tiny_wan` writes a real
diffusers folder (``model_index.json``, ``transformer/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``...) that the Wan backend
loads with ``from_pretrained(local_files_only=True)``.

Layouts (module names as in the real checkpoints, so patch points and LoRA
keys resolve the same way):

* ``"t2v"`` — Wan 2.1 text-to-video (16 latent channels, one transformer);
* ``"i2v"`` — Wan 2.1 image-to-video: 36 input channels (16 noise + 4 mask +
  16 image latent), an image embedder fed by a tiny ``CLIPVisionModel``;
* ``"a14b"`` — Wan 2.2 two-expert layout: ``transformer`` (high noise) and
  ``transformer_2`` (low noise) with a ``boundary_ratio``;
* ``"ti2v"`` — Wan 2.2 TI2V-5B layout: 48-channel residual VAE with x16
  spatial compression (patchified pixels), per-token timesteps
  (``expand_timesteps``).

Tiny sizes: head dim 12 (RoPE split 4/4/4), 2 heads, 2 layers; VAE x8
spatial / x4 temporal like the real one. A 9-frame 32x32 clip is a
(1, 16, 3, 4, 4) latent, 12 tokens.

Example::

    from cinescale_wan.tiny import save_tiny_wan
    path = save_tiny_wan(tmp_path / "tiny-wan")      # ~1 MB, < 1 s
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_WAN_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=64,
)

TINY_WAN_VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3,
    z_dim=16,
    dim_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[False, True, True],
)

# Wan 2.2 TI2V-5B VAE layout (z 48, residual, pixel patch 2, x16 spatial), tiny widths.
TINY_WAN22_VAE_CONFIG: dict[str, Any] = dict(
    base_dim=4,
    decoder_base_dim=4,
    z_dim=48,
    dim_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    latents_mean=[0.0] * 48,
    latents_std=[1.0] * 48,
)

TINY_UMT5_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
)

TINY_CLIP_VISION_CONFIG: dict[str, Any] = dict(
    hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
    patch_size=8, projection_dim=16,
)

# Wan 2.1's reference sampler (ALGORITHM.md 4.4): flow-matching Euler, shift 7 for 2K.
WAN_SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=7.0)

_WORDS = ["a", "an", "the", "owl", "bear", "fish", "water", "in", "with", "its", "mouth", "brown", "photo", "of",
          "cat", "dog", "blurry", "video", "city", "night", "snow", "forest", "river"]


def tiny_t5_tokenizer():
    """A Unigram T5 tokenizer over a few words and all lowercase letters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in _WORDS]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.'-"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_tiny_wan(seed: int = 0, *, layout: str = "t2v", text_encoder: bool = True, dtype=None,
                   transformer_config: dict | None = None) -> dict[str, Any]:
    """Components for ``WanPipeline(**c)`` (``layout="t2v"``/``"a14b"``) or
    ``WanImageToVideoPipeline(**c)`` (``"i2v"``); random weights seeded with
    ``seed``, eval mode. ``transformer_config`` overrides config keys."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    if layout not in ("t2v", "i2v", "a14b", "ti2v"):
        raise ValueError(f"layout {layout!r}: use t2v, i2v, a14b or ti2v")
    cfg = dict(TINY_WAN_TRANSFORMER_CONFIG)
    if layout == "i2v":
        cfg.update(in_channels=36, image_dim=TINY_CLIP_VISION_CONFIG["hidden_size"], added_kv_proj_dim=24)
    if layout == "ti2v":
        cfg.update(in_channels=48, out_channels=48)
    cfg.update(transformer_config or {})
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**cfg).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**(TINY_WAN22_VAE_CONFIG if layout == "ti2v" else TINY_WAN_VAE_CONFIG)).eval()
    comps: dict[str, Any] = dict(transformer=transformer, vae=vae,
                                 scheduler=FlowMatchEulerDiscreteScheduler(**WAN_SCHEDULER_CONFIG),
                                 tokenizer=None, text_encoder=None)
    if layout == "ti2v":
        comps["expand_timesteps"] = True
    if layout == "a14b":
        torch.manual_seed(seed + 4)
        comps["transformer_2"] = WanTransformer3DModel(**cfg).eval()
        comps["boundary_ratio"] = 0.875
    if text_encoder:
        from transformers import UMT5Config, UMT5EncoderModel

        tok = tiny_t5_tokenizer()
        torch.manual_seed(seed + 2)
        te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, **TINY_UMT5_CONFIG)).eval()
        comps.update(tokenizer=tok, text_encoder=te)
    if layout == "i2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        torch.manual_seed(seed + 3)
        comps["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP_VISION_CONFIG)).eval()
        comps["image_processor"] = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if dtype is not None:
        for k in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
            if comps.get(k) is not None:
                comps[k] = comps[k].to(dtype)
    return comps


def tiny_wan_pipeline(seed: int = 0, *, layout: str = "t2v", text_encoder: bool = True, dtype=None):
    """The matching diffusers pipeline object, built in memory."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    comps = build_tiny_wan(seed, layout=layout, text_encoder=text_encoder, dtype=dtype)
    cls = WanImageToVideoPipeline if layout == "i2v" else WanPipeline
    return cls(**comps)


def save_tiny_wan(path: str | Path, seed: int = 0, *, layout: str = "t2v", text_encoder: bool = True) -> Path:
    """Build a tiny Wan pipeline and ``save_pretrained`` it (safetensors) into
    ``path``; returns the folder."""
    path = Path(path)
    pipe = tiny_wan_pipeline(seed, layout=layout, text_encoder=text_encoder)
    pipe.save_pretrained(path, safe_serialization=True)
    (path / "cinescale_tiny.json").write_text(json.dumps({"kind": f"tiny-wan-{layout}", "seed": seed}))
    return path


def save_tiny_wan_single_file(path: str | Path, seed: int = 0) -> Path:
    """The tiny T2V transformer as ONE ``.safetensors`` file with the original
    Wan key names (``blocks.0.self_attn.q.weight``...), like the released
    single-file checkpoints; pair it with a folder from :func:`save_tiny_wan`
    for the other components."""
    from safetensors.torch import save_file

    comps = build_tiny_wan(seed, text_encoder=False)
    sd = comps["transformer"].state_dict()
    out = {diffusers_to_wan_key(k): v.contiguous() for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))
    return path


_D2W = (
    ("attn1.to_q", "self_attn.q"), ("attn1.to_k", "self_attn.k"), ("attn1.to_v", "self_attn.v"),
    ("attn1.to_out.0", "self_attn.o"), ("attn1.norm_q", "self_attn.norm_q"), ("attn1.norm_k", "self_attn.norm_k"),
    ("attn2.to_q", "cross_attn.q"), ("attn2.to_k", "cross_attn.k"), ("attn2.to_v", "cross_attn.v"),
    ("attn2.to_out.0", "cross_attn.o"), ("attn2.norm_q", "cross_attn.norm_q"), ("attn2.norm_k", "cross_attn.norm_k"),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"), ("norm2", "norm3"), ("scale_shift_table", "modulation"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("proj_out", "head.head"),
)


def diffusers_to_wan_key(key: str) -> str:
    """diffusers Wan transformer state-dict key -> original Wan key (inverse of
    diffusers' single-file conversion, for the layers the tiny model has)."""
    if key == "scale_shift_table":
        return "head.modulation"
    for d, w in _D2W:
        if f".{d}." in f".{key}" or key.startswith(d + "."):
            return key.replace(d, w, 1)
    return key


def tiny_wan_prompt_embeds(batch: int = 1, seed: int = 0, length: int = 512, dim: int = 32, dtype=None):
    """Random (B, length, dim) text embeddings for runs without a text encoder."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    pe = torch.randn(batch, length, dim, generator=g)
    return pe.to(dtype) if dtype is not None else pe


def tiny_wan_inputs(seed: int = 5, latent: tuple[int, int, int] = (3, 8, 8), text_len: int = 12,
                    channels: int = 16) -> dict:
    """Keyword inputs of one tiny transformer forward: latent (1, C, F, H, W),
    timestep 700, random text states (1, text_len, 32)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(1, channels, *latent, generator=g), timestep=torch.tensor([700.0]),
                encoder_hidden_states=torch.randn(1, text_len, 32, generator=g))


__all__ = ["tiny_wan_inputs", "TINY_WAN22_VAE_CONFIG", "TINY_CLIP_VISION_CONFIG", "TINY_UMT5_CONFIG", "TINY_WAN_TRANSFORMER_CONFIG", "TINY_WAN_VAE_CONFIG",
           "WAN_SCHEDULER_CONFIG", "build_tiny_wan", "diffusers_to_wan_key", "save_tiny_wan",
           "save_tiny_wan_single_file", "tiny_t5_tokenizer", "tiny_wan_pipeline", "tiny_wan_prompt_embeds"]
