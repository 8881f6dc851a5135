"""Helpers shared by the Wan plugin tests (a distinct module name, so the
suite runs in one session with other plugins' tests)."""

import numpy as np

# 32 px -> 64 px, 3 steps each, restart at 1: a tiny 2-stage CineScale ladder.
TINY_STAGES = (
    {"size": [32, 32], "steps": 3, "shift": 7.0},
    {"size": [64, 64], "steps": 3, "restart_step": 1, "shift": 11.0, "attention_scale": 1.5},
)
TINY_REFINE = ({"size": "output", "steps": 3, "restart_step": 1, "shift": 11.0},)
TINY_OPTIONS = {"num_frames": 5, "max_sequence_length": 16}


def driver():
    """A fresh core render driver around the Wan adapter (what ``host.backend("wan")`` gives a render)."""
    from cinescale_post.testing import adapter_driver
    from cinescale_wan.backend import WanAdapter

    return adapter_driver(WanAdapter())


def make_plan(model, *, stages=TINY_STAGES, options=None, mode="generate", size=(64, 64), dtype="float32",
              prompt="a brown owl in the snow", seed=7):
    """A plan for the Wan driver, stages and options validated as ``plan.build`` does."""
    from cinescale_post.testing import make_test_plan

    return make_test_plan(driver(), model=model, stages=stages, options={**TINY_OPTIONS, **(options or {})},
                          size=size, mode=mode, prompt=prompt, dtype=dtype, seed=seed)


def seed_for(number, tile=0):
    return 1000 + 31 * int(number) + tile


def frames_of(images, first=1001):
    from cinescale_post.contracts.media import Frame

    return [Frame(number=first + i, index=i, rgb=im) for i, im in enumerate(images)]


def clip_frames(n, size=(32, 32), seed=0):
    """A moving gradient with a little noise: n frames (H, W, 3) float32."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    out = []
    for i in range(n):
        base = np.stack([(x + 0.05 * i) % 1, y, 0.5 * (x + y)], -1)
        out.append((0.8 * base + 0.2 * g.random((size[1], size[0], 3))).astype(np.float32))
    return out
