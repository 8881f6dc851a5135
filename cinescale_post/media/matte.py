"""Mattes: where a render may change the plate (``--matte``, ``[matte]``).

A matte is one value in [0, 1] per pixel and frame: 1 where the model's
picture goes, 0 where the plate stays the classical draft upscale. It comes
from a still image (every frame), an image sequence (``####``, ``%04d``,
``@``: one matte per plate frame, by number), a movie (frame i with the
plate's frame i, numbered from the plate's first frame), or the plate's own
alpha (``alpha``). ``channel`` picks ``A`` (the file's alpha), ``R`` or
``luma`` (Rec. 709 weights of R'G'B'); ``auto`` is A where the file has
alpha, else luma. 8- and 16-bit files read as code / maximum; float files as
stored, clamped to [0, 1].

A matte follows the picture's geometry exactly as alpha does
(``media.alpha``): rotated like the plate, resampled by Lanczos (clipped to
[0, 1]) to the scaled picture, then padded or cropped by the placement (a
pad is outside the matte). A missing frame of a matte sequence follows the
render's ``--missing`` (``black``: 0, nothing changes there; ``hold``: the
frame before; ``checkerboard``: the sequence reader's checkerboard, as
luma), which the plan checks before anything renders.
"""

from __future__ import annotations

import numpy as np

import cinescale_post.media.alpha as alpha_mod

#: ``matte.channel`` values.
CHANNELS = ("auto", "A", "R", "luma")
#: ``matte.mode``: "detail" (the model's detail mask), "holdout" (matte x model + (1 - matte) x draft), both.
MODES = ("both", "detail", "holdout")
#: ``--matte alpha``: the plate's own alpha.
PLATE_ALPHA = "alpha"

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def channel_of(rgb: np.ndarray, alpha: np.ndarray | None, channel: str) -> np.ndarray:
    """(H, W) float32 in [0, 1] of one decoded frame. ``channel``: A, R or luma."""
    if channel == "A":
        v = alpha if alpha is not None else np.ones(rgb.shape[:2], np.float32)
    elif channel == "R":
        v = rgb[..., 0]
    else:
        v = rgb[..., :3] @ _LUMA
    return np.clip(np.asarray(v, np.float32), 0.0, 1.0)


class MatteReader:
    """The mattes of one render, at the scaled picture's size.

    ``matte``: the plan's matte table (``source``, ``channel``, ``kind``);
    ``open_source(path, first_frame) -> Reader``: opens the matte (the
    render's reader policy, so ``--missing`` applies); ``rotate``: the
    plate's rotation in degrees; ``size``: (scale_w, scale_h)."""

    def __init__(self, matte, open_source, *, plate: str, first_frame: int, rotate: int, size: tuple[int, int]):
        self.channel = matte["channel"]
        self.still = matte["kind"] == "image"
        self.k = (int(rotate) // 90) % 4
        self.size = tuple(size)
        path = plate if matte["source"] == PLATE_ALPHA else matte["source"]
        self.reader = open_source(path, first_frame)
        self._still: np.ndarray | None = None
        self._cache: dict[int, np.ndarray] = {}

    def _shaped(self, frame) -> np.ndarray:
        v = channel_of(frame.rgb, frame.alpha, self.channel)
        if self.k:
            v = np.ascontiguousarray(np.rot90(v, self.k))
        return alpha_mod.resample(v, self.size)

    def values(self, numbers) -> list[np.ndarray]:
        """(scale_h, scale_w) float32 mattes of plate frames ``numbers``."""
        if self.still:
            if self._still is None:
                self._still = self._shaped(next(iter(self.reader.read(self.reader.info.frame_numbers[:1]))))
            return [self._still for _ in numbers]
        want = sorted({int(n) for n in numbers} - set(self._cache))
        if want:
            for fr in self.reader.read(want):
                self._cache[fr.number] = self._shaped(fr)
        got = [self._cache[int(n)] for n in numbers]
        lo = min(int(n) for n in numbers)
        for n in [n for n in self._cache if n < lo]:  # windows move forward: keep only what is ahead
            del self._cache[n]
        return got

    def close(self) -> None:
        self.reader.close()


__all__ = ["CHANNELS", "MODES", "PLATE_ALPHA", "MatteReader", "channel_of"]
