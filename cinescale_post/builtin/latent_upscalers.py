"""Built-in plugin: stage upscalers of the cascade engine (torch tensors).

* ``vae-bicubic`` — the FreeScale reference: decode, bicubic in pixel space
  (``align_corners=False``, no antialias, not clamped), encode.
* ``vae-bilinear`` — the same through the VAE, bilinear.
* ``latent-bicubic`` — DemoFusion: bicubic on the latent, no VAE round trip.
* ``latent-bilinear``, ``latent-nearest`` — latent interpolation.
* ``latent-trilinear`` — CineScale (video latents (B, C, F, H, W); F kept).

The pixel ``bicubic``/``lanczos`` of the draft engine are different objects
(numpy, registered by ``builtin.upscalers``).
"""

from __future__ import annotations

from cinescale_post.contracts.hookspecs import hookimpl


class _Lazy:
    """Defers the torch import until an upscaler is called."""

    def __init__(self, name: str, mode: str, via_pixels: bool, description: str):
        self.name = name
        self.mode = mode
        self.via_pixels = via_pixels
        self.description = description
        self.space = "latent"

    def __call__(self, x, size):
        from cinescale_post.cascade.upscale import resize

        return resize(x, size, self.mode)

    def __repr__(self) -> str:
        return f"<upscaler {self.name}>"


UPSCALERS = {u.name: u for u in (
    _Lazy("vae-bicubic", "bicubic", True, "decode, bicubic in pixel space, encode (FreeScale reference)"),
    _Lazy("vae-bilinear", "bilinear", True, "decode, bilinear in pixel space, encode"),
    _Lazy("latent-bicubic", "bicubic", False, "bicubic on the latent (DemoFusion)"),
    _Lazy("latent-bilinear", "bilinear", False, "bilinear on the latent"),
    _Lazy("latent-nearest", "nearest", False, "nearest on the latent"),
    _Lazy("latent-trilinear", "trilinear", False, "trilinear on video latents, frames kept (CineScale)"),
)}


@hookimpl
def register_upscalers(register):
    for up in UPSCALERS.values():
        register(up)
