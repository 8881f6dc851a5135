"""Restrained dilated convolution (FreeScale, ALGORITHM.md section 2).

During the early steps of an upscaled stage a few 3x3 convolutions of the
down and mid blocks run with dilation ``d = target_width // base_width`` and
padding ``d`` (so the spatial size is kept). Which convolutions is *data*
declared by the model adapter (the SDXL plugin's list: the down-block-1
downsampler, the down-block-2 resnets and the mid-block resnets, never the
up blocks).

The change is an attribute change (``conv.dilation`` / ``conv.padding``; torch
reads them on every call) restored by a :class:`~cinescale_post.ops.handles.Handle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cinescale_post.ops.handles import Handle, patch_attributes

def dilation_factor(target_width: int, base_width: int) -> int:
    """``target_width // base_width``, at least 1 (reference: ``W // 1024``).

    >>> dilation_factor(4096, 1024), dilation_factor(3840, 1024), dilation_factor(1024, 1024)
    (4, 3, 1)
    """
    if base_width <= 0 or target_width <= 0:
        raise ValueError(f"sizes must be positive, got target {target_width}, base {base_width}")
    return max(1, int(target_width) // int(base_width))


@dataclass(frozen=True)
class DilationSpec:
    """Which convolutions (module names) get which integer dilation."""

    names: tuple[str, ...]
    factor: int

    def __post_init__(self):
        if not isinstance(self.factor, int) or isinstance(self.factor, bool) or self.factor < 1:
            raise ValueError(f"dilation factor must be an int >= 1, got {self.factor!r}")
        if not self.names or not all(isinstance(n, str) and n for n in self.names):
            raise ValueError(f"dilation needs a non-empty tuple of module names, got {self.names!r}")
        object.__setattr__(self, "names", tuple(self.names))


def select_convs(model: Any, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Return ``[(name, conv)]`` for the named ``nn.Conv2d`` modules of ``model``.

    Raises ``KeyError`` naming the missing modules and the convolutions that
    do exist, or ``TypeError`` when a name is not a 2-D convolution with an odd
    kernel.
    """
    import torch

    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        convs = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
        raise KeyError(
            f"no module named {', '.join(missing)} in {type(model).__name__}; "
            f"fix: declare existing convolution names in the backend's patch points "
            f"(it has {len(convs)}, e.g. {', '.join(convs[:6])})")
    out = []
    for n in names:
        m = modules[n]
        if not isinstance(m, torch.nn.Conv2d) or any(k % 2 == 0 for k in m.kernel_size):
            raise TypeError(f"{n} is {type(m).__name__} (kernel {getattr(m, 'kernel_size', None)}); "
                            "only nn.Conv2d with odd kernels can be dilated")
        out.append((n, m))
    return out


def apply_dilation(model: Any, spec: DilationSpec) -> Handle:
    """Dilate the named convolutions of ``model`` by ``spec.factor``.

    Padding becomes ``factor * (kernel // 2)`` (= ``factor`` for 3x3, as the
    reference), so outputs keep their spatial size. Returns a handle that
    restores the original ``dilation``/``padding``; usable as a context manager.
    """
    convs = select_convs(model, spec.names)
    changes = []
    for _, conv in convs:
        kh, kw = conv.kernel_size
        changes.append((conv, "dilation", (spec.factor, spec.factor)))
        changes.append((conv, "padding", (spec.factor * (kh // 2), spec.factor * (kw // 2))))
    return patch_attributes(changes, f"dilation x{spec.factor} on {len(convs)} convs")


__all__ = ["DilationSpec", "apply_dilation", "dilation_factor", "select_convs"]
