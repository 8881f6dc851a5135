"""What the render driver needs around a model load: the extra check on a
core-only install, the rank's device under context parallelism, the detail
mask and first-frame images, and torch's out-of-memory error as ours.
Importing this module does not import torch."""

from __future__ import annotations

from typing import Any, Mapping

from cinescale_post.contracts.errors import OutOfMemoryError


class OOMGuard:
    """Torch's out-of-memory errors as our :class:`OutOfMemoryError` (exit 5)
    with the adapter's advice; the orchestrator's back-off still sees them."""

    def __init__(self, advice: str):
        self.advice = advice

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and "OutOfMemoryError" in exc_type.__name__ and exc_type is not OutOfMemoryError:
            raise OutOfMemoryError(f"out of GPU memory: {exc}", fix=self.advice) from exc
        return False


def read_rgb(path: str):
    """An image file (PNG/TIFF/JPEG/EXR, any depth) as (H, W, 3) float32 R'G'B'
    (first frame of i2v), through the media readers' ``read_image``."""
    import numpy as np

    from cinescale_post.media.sequence_reader import read_image

    return np.ascontiguousarray(np.asarray(read_image(path).rgb, np.float32)[..., :3])


def mask_luma8(rgb):
    """8-bit grey of (H, W, 3) R'G'B' in [0, 1] as PIL's ``convert("L")``
    makes it (ITU-R 601-2 luma in 16.16 fixed point, rounded): the reference
    (FreeScale imgen's ``process_image_to_bitensor``) reads the mask so."""
    import numpy as np

    c = np.rint(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0) * 255.0).astype(np.int64)
    return (c[..., 0] * 19595 + c[..., 1] * 38470 + c[..., 2] * 7471 + 0x8000) >> 16


def load_detail_mask(path: str | None, soft: bool = False):
    """The detail mask of ``path`` as a ``DetailMask`` over a (1, 1, H, W)
    float tensor, or None. Reference (FreeScale imgen): the image in 8-bit
    grey (:func:`mask_luma8`), every non-zero grey pixel detail, so a grey
    0.3 band counts and a pixel too dark to reach grey 1 does not; ``soft``:
    the grey level is the per-pixel weight between ``cosine_scale`` and
    ``cosine_scale_bg``."""
    if not path:
        return None
    import numpy as np
    import torch

    from cinescale_post.media.sequence_reader import read_image
    from cinescale_post.cascade.schedule import DetailMask

    grey = mask_luma8(read_image(path).rgb)
    values = grey / 255.0 if soft else (grey != 0)
    return DetailMask(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None], soft=soft)


DIFFUSION_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors")


def require_diffusion(backend_id: str) -> None:
    """Refuse to load a model on a core-only install (no torch...), naming the
    extra that adds them; planning (``--dry-run``, ``--gpu``) needs none of them."""
    import importlib.util

    from cinescale_post.contracts.errors import UsageError

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except ImportError:  # a finder that refuses it (or a broken install): not importable either
            return True

    missing = [m for m in DIFFUSION_LIBRARIES if absent(m)]
    if missing:
        raise UsageError(f"backend {backend_id!r} needs {', '.join(missing)}, which this install does not have",
                         fix="pip install 'cinescale-post[diffusion]' (the diffusion backends' libraries), or "
                             "render with a draft preset such as uhd-draft")


def padded_length(n: int, rule: Any) -> int:
    """Smallest length >= n the frame rule accepts (4k+1: 1 -> 1, 6 -> 9)."""
    k = max(n, rule.offset or 1)
    while not rule.accepts(k):
        k += 1
    return k


def on_rank_device(device: str, spec: Mapping[str, Any]) -> str:
    """The device the adapter loads on: under context parallelism the process
    group exists and the device is this rank's (``cuda:LOCAL_RANK``) before
    any weight moves (``ops.distributed.init_distributed``)."""
    if not spec:
        return str(device)
    from cinescale_post.ops.distributed import init_distributed

    return str(init_distributed(spec, device))


__all__ = ["DIFFUSION_LIBRARIES", "OOMGuard", "load_detail_mask", "on_rank_device", "padded_length", "read_rgb",
           "require_diffusion"]
