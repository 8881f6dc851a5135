"""Alpha carried around the model (issue 11): the backend sees RGB only.

``AlphaCarry`` sits between the reader and the render driver:

* ``take(frame)`` when a source frame is read: rotate its alpha like the
  picture, premultiply a straight source (the model sees the picture over
  black, the only form in which resampling is correct), keep the alpha aside
  and hand on the frame without it.
* ``finish(number, placed_rgb)`` when the rendered frame is written: resample
  the alpha to the picture's size, place it like the picture (pads are
  transparent), and un-premultiply the colour for outputs that store straight
  alpha. A frame whose alpha is no longer held (its chunk did not read it)
  is read again: correctness never depends on the schedule.

Conventions and the reasons for them: ``media/alpha.py``.
"""

from __future__ import annotations

import numpy as np

from cinescale_post.contracts.media import Frame
import cinescale_post.media.alpha as alpha_mod
from cinescale_post.media.placement import place


class AlphaCarry:
    """Alpha of the source frames in flight for one render (``plan.output.alpha``
    set); ``None``-like no-op when the plan carries no alpha (:meth:`for_plan`)."""

    def __init__(self, plan, reader, rotate_k: int):
        self.plan = plan
        self.reader = reader
        self.k = rotate_k % 4
        self.read_as = plan.output.source_alpha  # "premultiplied" | "straight"
        self.write_as = plan.output.alpha
        self.held: dict[int, np.ndarray] = {}

    @classmethod
    def for_plan(cls, plan, reader, rotate: int) -> "AlphaCarry | None":
        if not getattr(plan.output, "alpha", "") or not getattr(plan.output, "source_alpha", ""):
            return None
        return cls(plan, reader, (rotate // 90) % 4)

    def _rotated(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(a, self.k)) if self.k else a

    def take(self, frame: Frame) -> Frame:
        """``frame`` (already rotated) without its alpha, premultiplied."""
        a = frame.alpha
        if a is None:  # a frame without alpha in an alpha source: opaque
            a = np.ones(frame.rgb.shape[:2], np.float32)
        else:
            a = self._rotated(np.asarray(a, np.float32))
        if self.read_as == "straight":
            frame.rgb = alpha_mod.premultiply(frame.rgb, a)
        frame.alpha = None
        self.held[frame.number] = a
        return frame

    def evict_below(self, lo: int) -> None:
        for n in [n for n in self.held if n < lo]:
            del self.held[n]

    def _alpha_of(self, number: int) -> np.ndarray:
        a = self.held.pop(number, None)
        if a is not None:
            return a
        fr = next(iter(self.reader.read([number])))
        return self._rotated(np.asarray(fr.alpha, np.float32)) if fr.alpha is not None \
            else np.ones(fr.rgb.shape[:2], np.float32)

    def finish(self, number: int, placed_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rgb as the writer stores it, (H, W) alpha) for output frame ``number``."""
        g = self.plan.output.geometry
        a = place(alpha_mod.resample(self._alpha_of(number), (g.scale_w, g.scale_h)), g)
        if self.write_as == "straight":
            return alpha_mod.unpremultiply(placed_rgb, a), a
        # Premultiplied: what a model paints where the plate is transparent is not
        # the plate's (it saw black there); colour under zero coverage is dropped.
        return alpha_mod.clear_transparent(placed_rgb, a), a
