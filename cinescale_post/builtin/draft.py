"""Built-in plugin: the classical draft backend.

No model: every frame is enlarged by a pixel-space upscaler chosen in the
plan (``backend_options.upscaler``, default "lanczos"). It exists so the whole
pipeline (probe, plan, windows, writers, resume, assemble) is usable and
testable without weights; diffusion backends plug into the same slot.
"""

from __future__ import annotations

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.contracts.engine import Backend, FrameRule, WindowJob


class DraftBackend(Backend):
    id = "draft"
    family = "classical"
    capabilities = frozenset({"v2v"})
    frame_rule = FrameRule(1, 0)
    temporal = False
    description = "classical resize (Lanczos or bicubic); no model, no GPU"

    def __init__(self, resolve=None):
        self._upscaler = None
        self._resolve = resolve
        self._spares: list[np.ndarray] = []  # earlier outputs, reused when nobody holds them (render)

    def for_render(self, resolve):
        return DraftBackend(resolve)

    def _upscaler_named(self, name: str):
        """The upscaler ``name`` through the render's lookup (built-ins
        without one); PlanError when it is unknown or not pixel-space."""
        from cinescale_post.contracts.errors import UnknownNameError
        from cinescale_post.builtin.upscalers import BICUBIC, LANCZOS

        try:
            if self._resolve is not None:
                up = self._resolve("upscaler", name)
            else:
                up = {u.name: u for u in (LANCZOS, BICUBIC)}[name]
        except (UnknownNameError, KeyError) as exc:
            raise PlanError(f"backend_options.upscaler = {name!r} is not a pixel-space upscaler",
                            fix=getattr(exc, "fix", None) or "use lanczos or bicubic") from exc
        if up.space != "pixel":
            raise PlanError(f"backend_options.upscaler = {name!r} is not a pixel-space upscaler",
                            fix="use lanczos, bicubic or another upscaler with space = \"pixel\"")
        return up

    def validate(self, *, stages, options, size, source):
        allowed = {"upscaler"}
        unknown = set(options) - allowed
        if unknown:
            raise PlanError(f"backend_options.{sorted(unknown)[0]} is not an option of the draft backend",
                            fix=f"allowed: {', '.join(sorted(allowed))}")
        if stages:
            raise PlanError("the draft backend has no diffusion stages",
                            fix="remove [[stages]] from the preset or choose a diffusion preset")
        name = options.get("upscaler", "lanczos")
        self._upscaler_named(name)
        return (), {"upscaler": name}

    def load(self, plan) -> None:
        self._upscaler = self._upscaler_named(plan.backend_options["upscaler"])

    def switch(self, plan) -> bool:
        self.load(plan)  # no weights: picking the upscaler again is the whole load
        return True

    def render(self, job: WindowJob) -> list[np.ndarray]:
        from cinescale_post.builtin.upscalers import CV2Upscaler

        if not isinstance(self._upscaler, CV2Upscaler):
            return [self._upscaler(f.rgb, job.size) for f in job.frames]
        outs = [self._upscaler(f.rgb, job.size, out=self._free_buffer()) for f in job.frames]
        made = [o for o, f in zip(outs, job.frames) if o is not f.rgb]  # not the source itself (no resize)
        self._spares = (made + self._spares)[:2]
        return outs

    def _free_buffer(self) -> np.ndarray | None:
        """A spare output buffer that nobody else references any more, or None.

        Resizing into the frame before last instead of a fresh array saves
        the page faults of a new 100 MB UHD float32 frame per frame (issue 11:
        ~0.3 CPU-s per frame while the process grows, on this VM). Only a
        buffer whose reference count shows that just this list holds it is
        taken, so an image the pipeline still keeps (a cache, a seam, a
        writer) is never overwritten."""
        import sys

        for _ in range(len(self._spares)):
            try:
                b = self._spares.pop()  # atomic: a buffer popped here is in no other render's hands
            except IndexError:
                return None
            if sys.getrefcount(b) == 2:  # only ``b`` and getrefcount's argument
                return b
            self._spares.insert(0, b)
        return None

    def unload(self) -> None:
        self._upscaler = None
        self._spares = []


@hookimpl
def register_backends(register):
    register(DraftBackend())
