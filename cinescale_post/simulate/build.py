"""Build the real-size models of :mod:`.configs` on the meta device.

``with torch.device("meta")`` makes every parameter a meta tensor: shapes and
dtypes are real, no memory is allocated and no weights exist (0.3 s for the
whole SDXL set). A forward on meta tensors runs every op's shape function,
which is what the tracker counts.
"""

from __future__ import annotations

from typing import Any

from cinescale_post.simulate.configs import architecture


def build_component(arch: str, component: str, dtype: Any = None) -> Any:
    """One component of ``arch`` on the meta device, in ``dtype`` (a torch
    dtype; None keeps float32), in eval mode. Schedulers are built normally."""
    import torch

    lib, cls_name, cfg = architecture(arch)[component]
    if component == "scheduler":
        import diffusers

        return getattr(diffusers, cls_name).from_config(dict(cfg))
    with torch.device("meta"):
        if lib == "diffusers":
            import diffusers

            model = getattr(diffusers, cls_name).from_config(dict(cfg))
        else:
            import transformers

            conf_cls = {"CLIPTextModel": transformers.CLIPTextConfig,
                        "CLIPTextModelWithProjection": transformers.CLIPTextConfig,
                        "UMT5EncoderModel": transformers.UMT5Config}[cls_name]
            model = getattr(transformers, cls_name)(conf_cls(**cfg))
    if dtype is not None:
        model = model.to(dtype)
    return model.eval().requires_grad_(False)


def build_architecture(arch: str, dtype: Any = None, *, vae_dtype: Any = None,
                       skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every component of ``arch`` (see :func:`build_component`); the VAE in
    ``vae_dtype`` when given. ``skip``: components to leave out (None)."""
    out: dict[str, Any] = {}
    for comp in architecture(arch):
        if comp in skip:
            out[comp] = None
            continue
        out[comp] = build_component(arch, comp, vae_dtype if (comp == "vae" and vae_dtype is not None) else dtype)
    return out


def param_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers (their own dtypes)."""
    if module is None:
        return 0
    return int(sum(p.numel() * p.element_size() for p in module.parameters())
               + sum(b.numel() * b.element_size() for b in module.buffers()))


def param_count(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters())) if module is not None else 0


__all__ = ["build_architecture", "build_component", "param_bytes", "param_count"]
