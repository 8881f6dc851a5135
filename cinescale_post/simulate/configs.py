"""Published configuration values of the real-size models (no weights).

Plain data: importing this module imports neither torch nor diffusers.
Values are those of the public ``config.json`` files of
``stabilityai/stable-diffusion-xl-base-1.0`` (UNet, VAE, both CLIP text
encoders, Euler scheduler) and ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` /
``Wan2.1-T2V-14B-Diffusers`` (transformer, Wan VAE, UMT5-XXL encoder), as
restated in ``reference/TINY_MODELS.md`` (addendum) and ``ALGORITHM.md`` 4.1.

:data:`ARCHITECTURES` maps an architecture name to its components:
``{component: (library, class name, config)}``; :func:`write_config_folder`
writes a diffusers-style folder of configs only (``model_index.json`` and one
``config.json`` per component), which the backends' memory planners read like
a downloaded model (``--model`` or ``backend_options.config``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SDXL_UNET: dict[str, Any] = dict(
    sample_size=128, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    only_cross_attention=False, block_out_channels=[320, 640, 1280], layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-05, cross_attention_dim=2048,
    transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], use_linear_projection=True,
    upcast_attention=None, resnet_time_scale_shift="default", addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, class_embed_type=None,
    time_cond_proj_dim=None, conv_in_kernel=3, conv_out_kernel=3,
)

SDXL_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2,
    act_fn="silu", norm_num_groups=32, sample_size=1024, scaling_factor=0.13025, force_upcast=True,
)

SDXL_TEXT_ENCODER: dict[str, Any] = dict(  # openai/clip-vit-large-patch14 text tower
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-05,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)

SDXL_TEXT_ENCODER_2: dict[str, Any] = dict(  # laion OpenCLIP ViT-bigG/14 text tower, with projection
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, projection_dim=1280, num_hidden_layers=32,
    num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-05,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)

SDXL_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False, timestep_spacing="leading",
    steps_offset=1,
)

WAN_TRANSFORMER_1_3B: dict[str, Any] = dict(
    patch_size=[1, 2, 2], num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-06, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)

WAN_TRANSFORMER_14B: dict[str, Any] = {**WAN_TRANSFORMER_1_3B, "num_attention_heads": 40, "ffn_dim": 13824,
                                       "num_layers": 40}

WAN_VAE: dict[str, Any] = dict(
    base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0,
    latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                  0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
    latents_std=[2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916],
)

WAN_TEXT_ENCODER: dict[str, Any] = dict(  # google/umt5-xxl encoder
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-06, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
)

WAN_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, shift=5.0)

#: architecture -> component -> (library, class, config)
ARCHITECTURES: dict[str, dict[str, tuple[str, str, dict]]] = {
    "sdxl-base": {
        "unet": ("diffusers", "UNet2DConditionModel", SDXL_UNET),
        "vae": ("diffusers", "AutoencoderKL", SDXL_VAE),
        "text_encoder": ("transformers", "CLIPTextModel", SDXL_TEXT_ENCODER),
        "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", SDXL_TEXT_ENCODER_2),
        "scheduler": ("diffusers", "EulerDiscreteScheduler", SDXL_SCHEDULER),
    },
    # stabilityai/sdxl-turbo: the SDXL UNet trained at 512 (sample_size 64), its own ancestral scheduler
    "sdxl-turbo": {
        "unet": ("diffusers", "UNet2DConditionModel", {**SDXL_UNET, "sample_size": 64}),
        "vae": ("diffusers", "AutoencoderKL", SDXL_VAE),
        "text_encoder": ("transformers", "CLIPTextModel", SDXL_TEXT_ENCODER),
        "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", SDXL_TEXT_ENCODER_2),
        "scheduler": ("diffusers", "EulerAncestralDiscreteScheduler",
                      {**SDXL_SCHEDULER, "timestep_spacing": "trailing", "steps_offset": 0}),
    },
    "wan2.1-t2v-1.3b": {
        "transformer": ("diffusers", "WanTransformer3DModel", WAN_TRANSFORMER_1_3B),
        "vae": ("diffusers", "AutoencoderKLWan", WAN_VAE),
        "text_encoder": ("transformers", "UMT5EncoderModel", WAN_TEXT_ENCODER),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", WAN_SCHEDULER),
    },
    "wan2.1-t2v-14b": {
        "transformer": ("diffusers", "WanTransformer3DModel", WAN_TRANSFORMER_14B),
        "vae": ("diffusers", "AutoencoderKLWan", WAN_VAE),
        "text_encoder": ("transformers", "UMT5EncoderModel", WAN_TEXT_ENCODER),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", WAN_SCHEDULER),
    },
}

PIPELINES = {"sdxl-base": "StableDiffusionXLPipeline", "sdxl-turbo": "StableDiffusionXLPipeline",
             "wan2.1-t2v-1.3b": "WanPipeline",
             "wan2.1-t2v-14b": "WanPipeline"}

#: published parameter counts, for a check of the built models (millions)
PUBLISHED_PARAMS_M = {("sdxl-base", "unet"): 2567.5, ("wan2.1-t2v-1.3b", "transformer"): 1418.0,
                      ("wan2.1-t2v-14b", "transformer"): 14288.0}


_MODEL_TYPES = {"CLIPTextModel": "clip_text_model", "CLIPTextModelWithProjection": "clip_text_model",
                "UMT5EncoderModel": "umt5"}


def architecture(name: str) -> dict[str, tuple[str, str, dict]]:
    """The components of architecture ``name`` (one of :data:`ARCHITECTURES`)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def write_config_folder(name: str, folder: str | Path) -> Path:
    """Write architecture ``name`` as a diffusers folder of configs only
    (no weights): ``model_index.json`` plus ``<component>/config.json`` (the
    scheduler's as ``scheduler/scheduler_config.json``). Returns the folder."""
    folder = Path(folder)
    comps = architecture(name)
    index: dict[str, Any] = {"_class_name": PIPELINES[name], "_diffusers_version": "0.42.1"}
    for comp, (lib, cls, cfg) in comps.items():
        sub = folder / comp
        sub.mkdir(parents=True, exist_ok=True)
        fname = "scheduler_config.json" if comp == "scheduler" else "config.json"
        body = ({"_class_name": cls, **cfg} if lib == "diffusers"
                else {"architectures": [cls], "model_type": _MODEL_TYPES[cls], **cfg})
        (sub / fname).write_text(json.dumps(body, indent=2))
        index[comp] = [lib, cls]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


__all__ = ["ARCHITECTURES", "PIPELINES", "PUBLISHED_PARAMS_M", "architecture", "write_config_folder"]
