"""Wan at real size on the meta device, for ``--dry-run --simulate``
(:class:`cinescale_post.api.MetaBuild`; no weights are read)."""

from __future__ import annotations

from typing import Any, Mapping

from cinescale_post.api import MetaBuild, ModelPlan

from .backend import WanModel

#: width of the UMT5-XXL text encoder's hidden states
_TEXT_WIDTH = 4096


class WanMetaBuild(MetaBuild):
    def architecture(self, plan: ModelPlan) -> str:
        return "wan2.1-t2v-14b" if "14b" in (plan.model or "").lower() else "wan2.1-t2v-1.3b"

    def component_dtypes(self, plan: ModelPlan) -> dict[str, str]:
        # "auto" is the model dtype on an accelerator, which is what a simulation sizes
        vae = "float32" if plan.options.vae_dtype == "float32" else plan.dtype
        return {"transformer": plan.dtype, "vae": vae, "text_encoder": plan.dtype}

    def assemble(self, plan: ModelPlan, components: Mapping[str, Any], scheduler: Any) -> WanModel:
        import torch
        from diffusers import WanPipeline

        pipe = WanPipeline(tokenizer=None, text_encoder=components["text_encoder"],
                           transformer=components["transformer"], vae=components["vae"], scheduler=scheduler)
        return WanModel(pipe, device=plan.device, dtype=getattr(torch, plan.dtype), options=plan.options)

    def condition(self, model: WanModel, components: Mapping[str, Any], *, size, guidance, phase):
        """UMT5 on (1, max_sequence_length) token ids for prompt and negative
        prompt (two CFG passes)."""
        import torch

        te = components["text_encoder"]
        n = int(model.options.max_sequence_length)
        embeds = []
        for _ in range(2):
            ids = torch.zeros(1, n, dtype=torch.long, device="meta")
            with phase():
                if te is not None:
                    # no mask: masks are values (transformers reads them), and padding changes no cost
                    embeds.append(te(ids).last_hidden_state)
                else:
                    embeds.append(torch.empty(1, n, _TEXT_WIDTH, device="meta", dtype=model.model_dtype))
        return model.condition("", "", guidance=guidance, prompt_embeds=(embeds[0], embeds[1]))
