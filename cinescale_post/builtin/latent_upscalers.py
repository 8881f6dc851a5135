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

from cinescale_post.contracts.engine import Upscaler
from cinescale_post.contracts.hookspecs import hookimpl


class TensorResize(Upscaler):
    """``ops.pixels.resize`` in one mode; torch is imported when it is first called."""

    def __init__(self, name: str, mode: str, via_pixels: bool, description: str):
        self.name = name
        self.mode = mode
        self.via_pixels = via_pixels
        self.description = description

    def __call__(self, x, size):
        from cinescale_post.ops.pixels import resize

        return resize(x, size, self.mode)

    def __repr__(self) -> str:
        return f"<upscaler {self.name}>"


UPSCALERS = {u.name: u for u in (
    TensorResize("vae-bicubic", "bicubic", True, "decode, bicubic in pixel space, encode (FreeScale reference)"),
    TensorResize("vae-bilinear", "bilinear", True, "decode, bilinear in pixel space, encode"),
    TensorResize("latent-bicubic", "bicubic", False, "bicubic on the latent (DemoFusion)"),
    TensorResize("latent-bilinear", "bilinear", False, "bilinear on the latent"),
    TensorResize("latent-nearest", "nearest", False, "nearest on the latent"),
    TensorResize("latent-trilinear", "trilinear", False, "trilinear on video latents, frames kept (CineScale)"),
)}


@hookimpl
def register_upscalers(register):
    for up in UPSCALERS.values():
        register(up)
