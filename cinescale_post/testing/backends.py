"""Deterministic test backends for the orchestrator (and plugin authors).

``NoiseBackend`` is a stand-in for a diffusion backend: each output frame is
the nearest-neighbour enlargement of its source frame plus noise drawn from
``seed_for(frame)`` plus (when temporal) a little of the window's mean, so
window layout, blending, seeds and resume are all visible in the pixels. It
uses numpy only: fast and bit-reproducible. Register it with
``Host(extra_plugins=(cinescale_post.testing.backends,))`` or an entry point.
"""

from __future__ import annotations

import numpy as np

from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.contracts.engine import Backend, FrameRule, WindowJob


class NoiseBackend(Backend):
    id = "test-noise"
    family = "test"
    capabilities = frozenset({"v2v", "t2i"})
    frame_rule = FrameRule(1, 0)
    temporal = False
    description = "deterministic test backend: nearest resize + per-frame seeded noise"
    strength = 0.05

    def load(self, plan) -> None:
        self.loaded = True

    def switch(self, plan) -> bool:
        self.load(plan)  # no weights: what a load sets costs nothing to set again
        return True

    def render(self, job: WindowJob) -> list[np.ndarray]:
        w, h = job.size
        mean = np.mean([f.rgb.mean() for f in job.frames]) if self.temporal else 0.0
        outs = []
        for f in job.frames:
            ys = (np.arange(h) * f.rgb.shape[0] // h)
            xs = (np.arange(w) * f.rgb.shape[1] // w)
            big = f.rgb[ys][:, xs]
            rng = np.random.default_rng(job.seed_for(f.number))
            noise = rng.standard_normal(big.shape, dtype=np.float32) * np.float32(self.strength)
            outs.append((big + noise + np.float32(0.1 * mean)).astype(np.float32))
        return outs


    def generate(self, plan, seed_for) -> list[np.ndarray]:
        """t2i stand-in: a gradient tinted by the prompt's hash, plus seeded noise."""
        import zlib

        w, h = plan.output.width, plan.output.height
        tint = (zlib.crc32(plan.prompt.encode()) % 997) / 997.0
        ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        img = np.broadcast_to(ramp * np.float32([1.0, tint, 1.0 - tint]), (h, w, 3))
        rng = np.random.default_rng(seed_for(1001))
        return [(img + rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(self.strength)).clip(0, 1)]


class TemporalNoiseBackend(NoiseBackend):
    """Like NoiseBackend, but video-DiT-like: windows of 4n+1 frames that
    influence each other (the window mean enters every frame)."""

    id = "test-temporal"
    frame_rule = FrameRule(4, 1)
    temporal = True


class IdentityBackend(NoiseBackend):
    """Returns the source frames untouched (same size): the no-op engine for
    measuring what the orchestration itself costs."""

    id = "test-identity"

    def render(self, job):
        return [f.rgb for f in job.frames]


class SlowBackend(NoiseBackend):
    """NoiseBackend that sleeps per frame, so tests can interrupt renders."""

    id = "test-slow"
    delay = 0.15

    def render(self, job):
        import time

        time.sleep(self.delay * len(job.frames))
        return super().render(job)


@hookimpl
def register_backends(register):
    register(NoiseBackend())
    register(TemporalNoiseBackend())
    register(SlowBackend())
    register(IdentityBackend())
