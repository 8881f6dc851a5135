"""A minimal model over the tiny SDXL-layout UNet/VAE (``cinescale_sdxl.tiny``)
with random prompt embeddings: the core's tests drive the cascade with it
without going through a backend plugin's adapter."""

from __future__ import annotations

def tiny_unet_model(seed: int = 0, *, device: str = "cpu"):
    """A minimal :class:`~cinescale_post.api.Model` over the tiny SDXL-layout
    UNet/VAE with random prompt embeddings (no text encoders): enough to
    drive the core cascade in tests without any backend plugin."""
    import copy

    import torch

    from cinescale_post.api import Model, ModelInfo, PatchPoints
    from cinescale_sdxl.options import SDXL_DILATED_CONVS
    from cinescale_sdxl.tiny import build_tiny_sdxl, tiny_prompt_embeds

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
