"""Built-in plugin: classical pixel-space upscalers (the draft engine's).

OpenCV's resize on float32 keeps full precision (no 8-bit round trip) and
keeps values above 1.0 (scene-linear EXR). Lanczos uses an 8x8 kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinescale_post.contracts.engine import Upscaler
from cinescale_post.contracts.hookspecs import hookimpl


@dataclass(frozen=True)
class CV2Upscaler(Upscaler):
    """Resize (H, W, C) float32 to ``size`` = (width, height)."""

    name: str
    interpolation: str
    space: str = "pixel"
    description: str = ""

    def __call__(self, x: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
        """``out``: a (h, w, C) float32 C-contiguous array to resize into (the
        same values as a fresh one; it saves the page faults of a new 100 MB
        UHD frame per call). Ignored when its shape does not fit."""
        import cv2

        w, h = size
        if x.shape[1] == w and x.shape[0] == h:
            return np.asarray(x, dtype=np.float32)
        # A shrink uses area averaging whatever was asked: Lanczos/bicubic
        # alias badly when decimating (a crop/fit may shrink one axis).
        flag = getattr(cv2, self.interpolation)
        if w < x.shape[1] and h < x.shape[0]:
            flag = cv2.INTER_AREA
        if out is not None and (x.ndim != 3 or x.shape[2] < 2 or out.shape != (h, w, x.shape[2])
                                or out.dtype != np.float32 or not out.flags.c_contiguous):
            out = None
        return cv2.resize(np.asarray(x, dtype=np.float32), (w, h), dst=out, interpolation=flag)


LANCZOS = CV2Upscaler("lanczos", "INTER_LANCZOS4", description="Lanczos, 8x8 kernel (sharpest classical)")
BICUBIC = CV2Upscaler("bicubic", "INTER_CUBIC", description="bicubic (a=-0.75), softer, faster")


@hookimpl
def register_upscalers(register):
    register(LANCZOS)
    register(BICUBIC)
