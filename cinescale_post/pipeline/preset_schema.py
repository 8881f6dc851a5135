"""The preset's keys, their types and defaults, and ``--set KEY=VALUE`` overrides.

Errors name the preset file, the key, the value and what is allowed.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from cinescale_post.contracts.errors import PlanError
from cinescale_post.pipeline.plan_types import SCHEMA

# key -> (type, default); tables are nested dicts. ``None`` type: free-form.
PRESET_SCHEMA: dict[str, Any] = {
    "schema": (int, SCHEMA),
    "description": (str, ""),
    "backend": (str, "draft"),
    "model": (str, ""),
    "device": (str, "auto"),
    "dtype": (str, "float32"),
    "seed": (int, 0),
    "prompt": (str, ""),
    "negative_prompt": (str, ""),
    "output": {
        "codec": (str, "prores_hq"),
        "width": (int, 3840),
        "height": (int, 2160),
        "fit": (str, "pad"),
        "audio": (object, True),  # true/"copy", "pcm", false/"none" (media.audio)
        "chunk": (int, 48),
        "options": (dict, {}),
        # issue 11: non-square pixels, alpha, SD -> HD colour (geometry, media.alpha, media.output_colour)
        "squeeze": (str, "desqueeze"),
        "alpha": (str, "auto"),
        "matrix": (str, "auto"),
        "primaries": (str, "auto"),
    },
    "input": {
        "pixel_aspect": (object, "auto"),  # "auto" (the file's), a number, or "16:15"
        "alpha": (str, "auto"),
        "on_bad_frame": (str, "error"),  # movies: error | hold | black (media.movie_reader)
        "missing": (str, "error"),  # sequences: error | black | hold | checkerboard
        # movies with fields (media.fields): auto | off | bwdif | yadif; frame | field; auto | off | on
        "deinterlace": (str, "auto"),
        "field_rate": (str, "frame"),
        "ivtc": (str, "auto"),
    },
    "window": {
        "size": (int, 1),
        "overlap": (int, 0),
        "blend": (str, "linear"),
        "cuts": (object, "none"),  # "none" | "detect" (PySceneDetect, media.scene_cuts) | [frame numbers]
    },
    # issue 25: a matte from comp or roto (media.matte, pipeline.plan_matte); --matte sets the source
    "matte": {
        "source": (str, ""),
        "channel": (str, "auto"),
        "mode": (str, "both"),
    },
    "backend_options": (dict, {}),
    "stages": (list, []),
    "colour": (dict, {"mode": "video"}),
}


def parse_override(item: str) -> tuple[str, Any]:
    """``"output.width=4096"`` -> ("output.width", 4096). Values are TOML
    (numbers, booleans, quoted strings, arrays); bare words are strings."""
    if "=" not in item:
        raise PlanError(f"--set {item!r}: expected KEY=VALUE", fix="e.g. --set output.width=4096")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_override(data: dict, key: str, value: Any, origin: str) -> None:
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            idx = _index(part, node, key)
            node = node[idx]
            continue
        if part not in node:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise PlanError(f"--set {key}: {'.'.join(parts[:-1])} is not a table in {origin}")


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise PlanError(f"--set {key}: {part!r} is not a stage index (0..{len(node) - 1})",
                        fix="stages are numbered from 0 in the order of the preset")
    return int(part)


def check_preset(data: dict, schema: dict, origin: str, prefix: str = "") -> dict:
    """Type-check ``data`` against ``schema`` and fill defaults."""
    out: dict = {}
    for key in data:
        if key not in schema:
            allowed = ", ".join(prefix + k for k in schema)
            raise PlanError(f"preset {origin}: unknown key {prefix + key!r}", fix=f"allowed keys: {allowed}")
    for key, spec in schema.items():
        name = prefix + key
        if isinstance(spec, dict):
            sub = data.get(key, {})
            if not isinstance(sub, dict):
                raise PlanError(f"preset {origin}: {name} must be a table, got {sub!r}")
            out[key] = check_preset(sub, spec, origin, name + ".")
            continue
        typ, default = spec
        if key not in data:
            out[key] = json.loads(json.dumps(default))
            continue
        value = data[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise PlanError(f"preset {origin}: {name} = {value!r} must be {_typename(typ)}",
                            fix=f"write e.g. {name} = {json.dumps(default) if typ is not str else repr(default or 'name')}")
        out[key] = value
    return out


def _typename(t) -> str:
    return {int: "an integer", str: "a string", bool: "true or false", dict: "a table",
            list: "an array of tables", float: "a number", object: "a value"}[t]


def choice(origin: str, name: str, value, allowed) -> None:
    if value not in allowed:
        raise PlanError(f"preset {origin}: {name} = {value!r} is not allowed",
                        fix=f"use one of: {', '.join(map(str, allowed))}")
