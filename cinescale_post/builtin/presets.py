"""Built-in plugin: registers the presets shipped with the package.

In a wheel they live in ``cinescale_post/_presets``; in a source checkout
(editable install) in the repository's top-level ``presets/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cinescale_post.contracts.hookspecs import hookimpl


def preset_dir():
    packaged = resources.files("cinescale_post") / "_presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "presets"


@hookimpl
def register_presets(register):
    folder = preset_dir()
    for res in sorted(folder.iterdir(), key=lambda r: r.name):
        if res.name.endswith(".toml"):
            register(res)
