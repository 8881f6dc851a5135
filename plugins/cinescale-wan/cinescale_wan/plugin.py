"""Entry point ``wan`` of group ``cinescale_post``: registers the backend and its presets.
Cheap: nothing here imports torch or diffusers."""

from __future__ import annotations

from importlib import resources

from cinescale_post import hookimpl

PRESETS = ("wan-2k-t2v", "wan-3k-t2v", "wan-4k-t2v", "wan-uhd-refine")


@hookimpl
def register_backends(register):
    from .backend import WanBackend

    register(WanBackend())


@hookimpl
def register_presets(register):
    folder = resources.files("cinescale_wan") / "presets"
    for name in PRESETS:
        register(folder / f"{name}.toml")
