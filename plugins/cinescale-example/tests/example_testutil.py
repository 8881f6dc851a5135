"""Helpers shared by this plugin's tests. A uniquely named module (not a
conftest), so the test folders of several plugins can be collected in one
pytest run; test files import it by name (pytest puts this folder on
``sys.path``)."""

from __future__ import annotations

import torch

from cinescale_post.testing import adapter_driver, make_test_plan

torch.set_num_threads(1)  # tiny models: one thread is as fast and bit-stable (TINY_MODELS.md)

# One refine stage of 2 steps: the cascade runs for real (VAE enlarge,
# re-noise at the restart step, dilation, scale fusion) in well under a second.
TINY_REFINE = ({"size": "output", "steps": 2, "restart_step": 1, "dilate_tau": 1, "guidance": 5.0},)
# Generate: base stage at the model's base size (64 px), then 2x.
TINY_LADDER = ({"scale": 1, "steps": 2, "guidance": 5.0},
               {"scale": 2, "steps": 2, "restart_step": 1, "dilate_tau": 1, "guidance": 5.0})


def save_model(tmp_path_factory, name: str = "tiny-sd15") -> str:
    """A tiny random SD 1.5-layout diffusers folder (safetensors), for one test module."""
    from cinescale_post.testing.tiny import save_tiny_sd15

    return str(save_tiny_sd15(tmp_path_factory.mktemp("models") / name))


def driver():
    """A fresh core render driver around the example adapter (as a render gets it)."""
    from cinescale_example.plugin import ExampleAdapter

    return adapter_driver(ExampleAdapter())


def plan_for(model: str, *, stages=TINY_REFINE, mode: str = "render", size=(128, 128), **kw):
    return make_test_plan(driver(), model=model, stages=stages, mode=mode, size=size, **kw)


def seed_for(number: int, tile: int = 0) -> int:
    return 1000 + 31 * int(number) + tile
