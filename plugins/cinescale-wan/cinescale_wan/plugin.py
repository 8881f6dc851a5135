"""Entry point ``wan`` of group ``cinescale_post``: registers the backend and its presets.
Cheap: nothing here imports torch or diffusers."""

from __future__ import annotations


from cinescale_post.api import hookimpl, packaged

PRESETS = ("wan-2k-t2v", "wan-3k-t2v", "wan-4k-t2v", "wan-uhd-refine")


@hookimpl
def register_backends(register):
    from .backend import WanAdapter

    register(WanAdapter())


@hookimpl
def register_presets(register):
    for preset in packaged("cinescale_wan"):
        register(preset)
