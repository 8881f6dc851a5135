"""SDXL at real size on the meta device, for ``--dry-run --simulate``
(:class:`cinescale_post.api.MetaBuild`; no weights are read)."""

from __future__ import annotations

from typing import Any, Mapping

from cinescale_post.api import MetaBuild, ModelPlan

from .backend import SDXLModel

#: CLIP token length and widths of the two text encoders' penultimate states and the pooled output
_TOKENS, _WIDTH_1, _WIDTH_2 = 77, 768, 1280


class SDXLMetaBuild(MetaBuild):
    def architecture(self, plan: ModelPlan) -> str:
        return "sdxl-base"

    def component_dtypes(self, plan: ModelPlan) -> dict[str, str]:
        vae_fp32 = plan.options.vae_fp32
        vae_fp32 = vae_fp32 is True or (vae_fp32 == "auto" and plan.dtype == "float16")  # the VAE's force_upcast
        return {"unet": plan.dtype, "vae": "float32" if vae_fp32 else plan.dtype,
                "text_encoder": plan.dtype, "text_encoder_2": plan.dtype}

    def assemble(self, plan: ModelPlan, components: Mapping[str, Any], scheduler: Any) -> SDXLModel:
        import torch
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline(vae=components["vae"], text_encoder=components["text_encoder"],
                                         text_encoder_2=components["text_encoder_2"], tokenizer=None,
                                         tokenizer_2=None, unet=components["unet"], scheduler=scheduler)
        return SDXLModel(pipe, device=plan.device, dtype=getattr(torch, plan.dtype), options=plan.options)

    def condition(self, model: SDXLModel, components: Mapping[str, Any], *, size, guidance, phase):
        """Both CLIP encoders on (1, 77) token ids, prompt and negative (CFG), as
        ``encode_prompt`` runs them; their penultimate states make the (1, 77,
        2048) embeddings the model takes."""
        import torch

        dtype = model.dtype
        te1, te2 = components["text_encoder"], components["text_encoder_2"]

        def meta(*shape):
            return torch.empty(*shape, device="meta", dtype=dtype)

        outs = []
        for _ in range(2):  # prompt, negative prompt
            ids = torch.zeros(1, _TOKENS, dtype=torch.long, device="meta")
            with phase():
                h1 = te1(ids, output_hidden_states=True).hidden_states[-2] if te1 is not None else \
                    meta(1, _TOKENS, _WIDTH_1)
                o2 = te2(ids, output_hidden_states=True) if te2 is not None else None
                h2 = o2.hidden_states[-2] if o2 is not None else meta(1, _TOKENS, _WIDTH_2)
                pooled = o2.text_embeds if o2 is not None else meta(1, _WIDTH_2)
                outs.append((torch.cat([h1, h2], dim=-1), pooled))
        (pe, pp), (ne, npool) = outs
        return model.condition("", "", size=size, guidance=guidance, prompt_embeds=(pe, pp, ne, npool))
