"""Small device helpers shared by the core and backend plugins."""

from __future__ import annotations


def empty_cache() -> None:
    """Return cached CUDA memory to the driver (after an OOM, at unload); a
    no-op without torch or CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but the core imports without it
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
