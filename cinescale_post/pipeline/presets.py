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

from cinescale_post.contracts.errors import PlanError, UnknownNameError

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


# ------------------------------------------------- generate without --preset

#: model_index.json ``_class_name`` -> (backend id, what it is). The pipelines
#: the shipped backends load from a diffusers folder.
PIPELINE_BACKENDS: dict[str, tuple[str, str]] = {
    "StableDiffusionXLPipeline": ("sdxl", "an SDXL pipeline"),
    "WanPipeline": ("wan", "a Wan text-to-video pipeline"),
    "WanVideoToVideoPipeline": ("wan", "a Wan pipeline"),
    "StableDiffusionPipeline": ("example-sd15", "a Stable Diffusion 1.x pipeline"),
}
#: Presets ``cinescale generate`` picks for a recognised model, smallest first;
#: the first whose output covers ``--size`` is chosen (no --size: the first,
#: the cheapest full CineScale result of that family).
GENERATE_PRESETS: dict[str, tuple[str, ...]] = {
    "sdxl": ("sdxl-2k-still", "sdxl-4k-still", "sdxl-8k-still"),
    "sdxl-turbo": ("sdxl-turbo-2k-still", "sdxl-turbo-4k-still"),
    "wan": ("wan-2k-t2v", "wan-3k-t2v", "wan-4k-t2v"),
    "example-sd15": ("example-sd15-1k-still",),
}
#: stabilityai/sdxl-turbo's unet/config.json: a 512-pixel base (SDXL's is 128)
TURBO_SAMPLE_SIZE = 64


def generate_presets(host) -> list[str]:
    """The installed presets ``generate`` can run, for messages."""
    have = host.presets()
    return [n for names in GENERATE_PRESETS.values() for n in names if n in have]


def _preset_hint(host) -> str:
    names = generate_presets(host)
    return (f"give --preset NAME ({', '.join(names)}; all presets: `cinescale presets list`)" if names
            else "give --preset NAME (`cinescale presets list`)")


def _family(model: Path, host) -> tuple[str, str]:
    """(GENERATE_PRESETS key, description) of a diffusers folder, from its
    model_index.json (and unet/config.json for SDXL-Turbo)."""
    import json

    from cinescale_post.contracts.errors import WeightsError

    index = model / "model_index.json"
    if not model.exists():
        raise WeightsError(f"--model {model}: does not exist",
                           fix="give a local diffusers folder (this tool never downloads weights)")
    if not model.is_dir():
        raise PlanError(f"--model {model}: a single weights file does not say which pipeline it is "
                        "(no model_index.json)", fix=_preset_hint(host))
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError, AttributeError) as exc:
        raise PlanError(f"--model {model}: cannot tell its pipeline: {index} is missing or unreadable "
                        f"({type(exc).__name__})", fix=_preset_hint(host)) from None
    if cls not in PIPELINE_BACKENDS:
        raise PlanError(f"--model {model}: model_index.json names _class_name {cls!r}, which no preset "
                        f"is chosen for (known: {', '.join(PIPELINE_BACKENDS)})", fix=_preset_hint(host))
    backend, what = PIPELINE_BACKENDS[cls]
    if backend == "sdxl":
        try:
            unet = json.loads((model / "unet" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            unet = {}
        if unet.get("sample_size") == TURBO_SAMPLE_SIZE:
            return "sdxl-turbo", "an SDXL-Turbo pipeline (unet sample_size 64)"
    return backend, what


def for_model(model: str | None, size: tuple[int, int] | None, host) -> tuple[str, str]:
    """``(preset name, note)`` for ``cinescale generate`` without ``--preset``:
    the backend from the model folder, the preset from ``size``. Raises
    PlanError (naming model_index.json and --preset) where it cannot tell."""
    if not model:
        raise PlanError("generate needs --preset, or --model with a diffusers folder to choose one from",
                        fix=_preset_hint(host))
    folder = Path(model).expanduser()
    family, what = _family(folder, host)
    have = host.presets()
    names = [n for n in GENERATE_PRESETS[family] if n in have]
    if not names:
        raise PlanError(f"--model {model} is {what}, but no preset for it is installed "
                        f"({', '.join(GENERATE_PRESETS[family])}: the backend's plugin is missing)",
                        fix="install the plugin (`cinescale plugins` lists what is loaded), or " + _preset_hint(host))
    chosen = names[0]
    if size:
        covering = []
        for n in names:
            out = load(n, host).data.get("output", {})
            if out.get("width", 0) >= size[0] and out.get("height", 0) >= size[1]:
                covering.append(n)
        chosen = covering[0] if covering else names[-1]
    return chosen, (f"--model {model} is {what} (model_index.json): preset {chosen} chosen"
                    f"{f' for {size[0]}x{size[1]}' if size else ''}; --preset NAME chooses another")
