"""Built-in plugin: attention fusions applied by the cascade in upscaled stages.

A fusion (:class:`cinescale_post.contracts.engine.Fusion`) has ``name``,
``description`` and ``apply(model, stage, *, latent_hw, jitter, group) -> Handle``:
it patches the attention layers the model declares
(``model.patch_points.fusion_attention``) for the duration of one stage and
returns the removable handle.

* ``scale-fusion`` — FreeScale: global + local-window self-attention fused as
  blur(local) + (global - blur(global)) (ALGORITHM.md section 3).
* ``global-only`` — plain global attention (no change to the model).
"""

from __future__ import annotations

from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.contracts.engine import Fusion


class ScaleFusion(Fusion):
    name = "scale-fusion"
    description = "global + local-window attention, low freq. of local + high freq. of global (FreeScale)"

    def state_for(self, backend, stage, *, latent_hw, jitter=None):
        from cinescale_post.ops.fusion import FusionState

        info = backend.model_info
        spec = stage.spec
        w, h = stage.size
        return FusionState(
            target_hw=(h, w), latent_hw=tuple(latent_hw), base=int(info.base_size[0]),
            base_latent=int(info.base_size[0]) // int(info.latent_factor), fast_mode=bool(spec.fast_mode),
            blur=spec.blur, sigma=float(spec.blur_sigma),
            jitter_fn=(jitter.randint if (jitter is not None and spec.jitter) else None),
            max_window_batch=spec.window_batch or None)

    def apply(self, backend, stage, *, latent_hw, jitter=None, group=(1, 0)):
        from cinescale_post.ops.fusion import apply_scale_fusion

        points = backend.patch_points.fusion_attention
        if not points:
            raise ValueError(f"backend {backend.id!r} declares no attention layers for scale fusion; "
                             'fix: set fusion = "none" or "global-only" in the stage')
        return apply_scale_fusion(backend.denoiser, points,
                                  self.state_for(backend, stage, latent_hw=latent_hw, jitter=jitter))


class GlobalOnly(Fusion):
    name = "global-only"
    description = "plain global self-attention (no change)"

    def apply(self, backend, stage, *, latent_hw, jitter=None, group=(1, 0)):
        from cinescale_post.ops.handles import Handle

        return Handle("global-only (no change)")


FUSIONS = {f.name: f for f in (ScaleFusion(), GlobalOnly())}


@hookimpl
def register_fusions(register):
    for f in FUSIONS.values():
        register(f)
