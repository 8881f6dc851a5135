"""Entry point ``sdxl`` of group ``cinescale_post``: registers the backend and its presets."""

from __future__ import annotations


from cinescale_post.api import hookimpl, packaged

PRESETS = ("sdxl-2k-still", "sdxl-4k-still", "sdxl-8k-still", "sdxl-uhd-refine", "sdxl-uhd-refine-anchored",
           "sdxl-turbo-2k-still", "sdxl-turbo-4k-still")


@hookimpl
def register_backends(register):
    from .backend import SDXLAdapter

    register(SDXLAdapter())


@hookimpl
def register_presets(register):
    for preset in packaged("cinescale_sdxl"):
        register(preset)
