"""Built-in plugin: the classical draft backend.

No model: every frame is enlarged by a pixel-space upscaler chosen in the
plan (``backend_options.upscaler``, default "lanczos"). It exists so the whole
pipeline (probe, plan, windows, writers, resume, assemble) is usable and
testable without weights; diffusion backends plug into the same slot.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..hookspecs import hookimpl
from ..interfaces import Backend, FrameRule, WindowJob


class DraftBackend(Backend):
    id = "draft"
    family = "classical"
    capabilities = frozenset({"v2v"})
    frame_rule = FrameRule(1, 0)
    temporal = False
    description = "classical resize (Lanczos or bicubic); no model, no GPU"

    def __init__(self):
        self._upscaler = None

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
        registry = self.host.upscalers() if self.host is not None else {}
        pixel = sorted(k for k, v in registry.items() if v.space == "pixel")
        if name not in pixel:
            raise PlanError(f"backend_options.upscaler = {name!r} is not a pixel-space upscaler",
                            fix=f"use one of: {', '.join(pixel) or 'none installed'}")
        return (), {"upscaler": name}

    def load(self, plan) -> None:
        self._upscaler = self.host.upscaler(plan.backend_options["upscaler"])

    def render(self, job: WindowJob) -> list[np.ndarray]:
        return [self._upscaler(f.rgb, job.size) for f in job.frames]

    def unload(self) -> None:
        self._upscaler = None


@hookimpl
def register_backends(register):
    register(DraftBackend())
