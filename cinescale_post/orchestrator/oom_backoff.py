"""Out-of-memory back-off around a backend call.

A backend may offer ``reduce_memory() -> str | None``: switch to the next
cheaper setting (smaller VAE/attention tiles, CPU offload...) and describe
it, or return None when nothing smaller exists. When a window runs out of
device memory the orchestrator frees the cache, asks for the next setting and
renders the same window again (the pixels stay deterministic: seeds derive
from frame numbers); when the smallest setting still fails, the render stops
with :class:`~cinescale_post.contracts.errors.OutOfMemoryError` (exit 5) and the
numbers. Estimation before the run is the backend's
``estimate_memory(plan) -> dict`` (printed by ``--dry-run``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from cinescale_post.ops.devices import empty_cache
from cinescale_post.contracts.errors import OutOfMemoryError

log = logging.getLogger(__name__)


def is_oom(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS out-of-memory errors and allocator failures."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError (a RuntimeError)
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def device_numbers() -> dict[str, Any]:
    """Free/total/peak device memory in GiB when CUDA is in use (else {})."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    free, total = torch.cuda.mem_get_info()
    return {"free_gib": round(free / 2**30, 2), "total_gib": round(total / 2**30, 2),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def render_with_backoff(backend, job, *, warn: Callable[[str], None], where: str) -> list:
    """``backend.render(job)``, retried with cheaper settings on OOM."""
    tried: list[str] = []
    while True:
        try:
            return backend.render(job)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled here
            if not is_oom(exc):
                raise
            empty_cache()
            nxt = backend.reduce_memory()
            if not nxt:
                numbers = device_numbers()
                detail = ", ".join(f"{k} {v}" for k, v in numbers.items()) or "no device numbers (CPU)"
                raise OutOfMemoryError(
                    f"out of memory rendering {where} with backend {backend.id!r} after "
                    f"{len(tried)} back-off step(s) ({'; '.join(tried) or 'none available'}): {detail}",
                    fix="use a GPU with more memory, a smaller output size (--set output.width=... --set "
                        "output.height=...) or window (--set window.size=...), or --set dtype=float16",
                ) from exc
            tried.append(nxt)
            warn(f"out of memory on {where}; retrying with {nxt}")
            log.warning("OOM on %s, retrying with %s", where, nxt)
