"""Preset files: where they are found and how they are read.

Search order for ``--preset NAME``: an existing ``.toml`` path; a file
``NAME.toml`` in any folder of ``$CINESCALE_PRESET_PATH`` (os.pathsep
separated, for studio presets); then presets registered by plugins through
``register_presets`` (the shipped ones included). Validation is not done
here: ``plan.build`` is the one place that checks values.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PlanError, UnknownNameError

ENV_PATH = "CINESCALE_PRESET_PATH"


@dataclass(frozen=True)
class PresetSource:
    name: str
    origin: str  # file path or "plugin:<name>"
    data: dict[str, Any]


def _read(resource, origin: str) -> dict[str, Any]:
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"preset {origin}: cannot be read ({exc})",
                        fix="check the path and its permissions") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"preset {origin}: not valid TOML ({exc})",
                        fix="fix the syntax at the line and column named") from exc


def packaged(package: str, folder: str = "presets") -> list:
    """The ``*.toml`` presets shipped inside ``package`` (in its ``presets``
    folder), sorted by name: what a plugin's ``register_presets`` registers.

    >>> packaged("cinescale_post", "_presets")  # doctest: +SKIP
    """
    from importlib import resources

    root = resources.files(package) / folder
    return sorted((r for r in root.iterdir() if r.name.endswith(".toml")), key=lambda r: r.name)


def available(host) -> dict[str, str]:
    """name -> origin of every preset that can be named."""
    found: dict[str, str] = {}
    for name, res in host.presets().items():
        found[name] = str(res)
    for folder in _env_dirs():
        for p in sorted(folder.glob("*.toml")):
            found[p.stem] = str(p)
    return dict(sorted(found.items()))


def _env_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get(ENV_PATH, "").split(os.pathsep) if d]


def load(name: str, host) -> PresetSource:
    """Find and parse a preset by name or path."""
    if name.endswith(".toml") or os.sep in name:
        p = Path(name)
        if not p.is_file():
            raise UnknownNameError(f"preset file {name} does not exist",
                                   fix="give an existing .toml path or a preset name (`cinescale presets list`)")
        return PresetSource(p.stem, str(p), _read(p, str(p)))
    for folder in _env_dirs():
        p = folder / f"{name}.toml"
        if p.is_file():
            return PresetSource(name, str(p), _read(p, str(p)))
    registered = host.presets()
    if name in registered:
        res = registered[name]
        return PresetSource(name, str(res), _read(res, str(res)))
    names = ", ".join(available(host)) or "none"
    raise UnknownNameError(f"unknown preset {name!r}", fix=f"use one of: {names}")
