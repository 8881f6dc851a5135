"""Wan conditioning: UMT5 prompt embeddings, CLIP image states (Wan 2.1 I2V)
and the VAE latent of an image-to-video first frame, on a loaded
:class:`~cinescale_wan.backend.WanModel` (components placed through its
offload slot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cinescale_post.api import PlanError, WeightsError


@dataclass
class WanCond:
    """Text (and image) conditioning; opaque to the core loop."""

    prompt_embeds: Any
    negative_embeds: Any = None
    image: Any = None  # (H, W, 3) float32 in [0, 1] for image-to-video
    image_embeds: Any = None  # CLIP hidden states (Wan 2.1 I2V)
    cache: dict = field(default_factory=dict)


def wan_condition(self, prompt: str, negative_prompt: str = "", *, guidance: float = 5.0, image: Any = None,
                  prompt_embeds: Any = None) -> WanCond:
    """T5 text conditioning of the loaded :class:`~cinescale_wan.backend.WanModel`
    ``self`` (``prompt_embeds``: (pe, npe) precomputed, for models saved without
    a text encoder); ``image``: (H, W, 3) in [0, 1] for image-to-video (CLIP
    image states when the model has an image encoder; the VAE image latent is
    made per stage size by :func:`image_latent`)."""
    import torch

    pipe = self.pipe
    cfg = guidance > 1.0
    if prompt_embeds is not None:
        pe, npe = prompt_embeds
    else:
        if pipe.text_encoder is None:
            raise WeightsError("this Wan model has no text encoder, so a text prompt cannot be encoded",
                               fix="use a model folder with text_encoder/ and tokenizer/")
        # WanPipeline's T5 path on any Wan pipeline: the I2V/V2V copies in diffusers
        # 0.42 call ftfy unguarded (NameError without ftfy); WanPipeline guards it.
        from diffusers import WanPipeline

        self.slot.use(pipe.text_encoder)
        with torch.no_grad():
            kw = dict(num_videos_per_prompt=1, max_sequence_length=self.options.max_sequence_length,
                      device=self.device)
            pe = WanPipeline._get_t5_prompt_embeds(pipe, prompt=prompt, **kw)
            npe = WanPipeline._get_t5_prompt_embeds(pipe, prompt=negative_prompt or "", **kw) if cfg else None
    img_embeds = None
    if image is not None and getattr(pipe, "image_encoder", None) is not None \
            and self.transformers[0].config.image_dim is not None:
        import numpy as np
        from PIL import Image

        if self.options.max_sequence_length != 512:
            raise PlanError(f"backend_options.max_sequence_length = {self.options.max_sequence_length}: "
                            f"{self.variant.name} splits image and text context at 512 text tokens",
                            fix="use max_sequence_length = 512 (the default) for image-to-video")
        pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype("uint8"))
        self.slot.use(pipe.image_encoder)
        with torch.no_grad():
            img_embeds = pipe.encode_image(pil, self.device).to(self.model_dtype)
    return WanCond(pe.to(self.device, self.model_dtype),
                   npe.to(self.device, self.model_dtype) if (cfg and npe is not None) else None,
                   image=image, image_embeds=img_embeds)


def image_latent(self, cond: WanCond, shape) -> Any:
    """The (1, 4 + z, F, h, w) mask + VAE latent of the first frame at the
    latent size ``shape`` (Wan I2V), cached per shape in the conditioning."""
    import torch
    import torch.nn.functional as F

    key = tuple(shape)
    if key not in cond.cache:
        info = self.model_info
        _, _, f, h, w = shape
        H, W = h * info.latent_factor, w * info.latent_factor
        img = torch.from_numpy(cond.image).permute(2, 0, 1)[None].float() * 2 - 1
        img = F.interpolate(img, size=(H, W), mode="bicubic", align_corners=False).clamp(-1, 1)
        self.slot.use(self.pipe.vae)
        with torch.no_grad():
            out = self.pipe.prepare_latents(img.to(self.device), 1, info.latent_channels, H, W,
                                            (f - 1) * info.temporal_factor + 1, torch.float32, self.device, None,
                                            torch.zeros(shape, dtype=torch.float32, device=self.device))
        cond.cache[key] = out[1].to(self.model_dtype)
    return cond.cache[key]


__all__ = ["WanCond", "image_latent", "wan_condition"]
