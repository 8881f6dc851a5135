"""Bytes of model weights, counted without loading them: from a diffusers
``config.json`` built on the meta device, from safetensors headers, or from a
loaded module (``ops.memory_estimate`` plans with these)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GiB = 2 ** 30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1}


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a dtype name ("float16") or a torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return DTYPE_BYTES[name]


def gib(n: float) -> float:
    return round(float(n) / GiB, 3)


def param_count(module: Any) -> int:
    """Parameters (and buffers) of a loaded ``torch.nn.Module``."""
    return int(sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers()))


def largest_leaf_params(module: Any) -> int:
    """Parameters of the largest module that holds its own parameters: what
    sequential offload keeps on the device at a time."""
    best = 0
    for m in module.modules():
        n = sum(p.numel() for p in m.parameters(recurse=False))
        best = max(best, n)
    return int(best)


def _read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def param_count_from_config(folder: str | Path) -> tuple[int, int]:
    """(parameters, largest leaf's parameters) of the diffusers model whose
    ``config.json`` is in ``folder``, built on the meta device (no memory, no
    weights). Falls back to the safetensors headers in the folder when the
    class is not a diffusers model (e.g. a transformers text encoder)."""
    folder = Path(folder)
    cfg = _read_config(folder)
    cls_name = cfg.get("_class_name")
    try:
        import diffusers
        import torch

        cls = getattr(diffusers, cls_name) if cls_name else None
        if cls is not None:
            with torch.device("meta"):
                model = cls.from_config(cfg)
            return param_count(model), largest_leaf_params(model)
        if cfg.get("architectures") and cfg.get("model_type"):  # a transformers model (text encoders)
            import transformers

            conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
            with torch.device("meta"):
                model = getattr(transformers, cfg["architectures"][0])(conf)
            return param_count(model), largest_leaf_params(model)
    except Exception:  # noqa: BLE001 - fall back to the weights' headers
        pass
    n, big = safetensors_params(folder)
    return n, big


def safetensors_params(folder: str | Path) -> tuple[int, int]:
    """(elements, largest tensor's elements) of every ``*.safetensors`` under
    ``folder`` (or of one file), read from the JSON headers only."""
    p = Path(folder)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors"))
    total = big = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            e = math.prod(v["shape"])
            total += e
            big = max(big, e)
    return total, big


@dataclass(frozen=True)
class Component:
    """A model part that sits on the device: ``nbytes`` of weights,
    ``largest_bytes`` of its largest layer (sequential offload)."""

    name: str
    nbytes: int
    largest_bytes: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "weights_gib": gib(self.nbytes)}


def component_from_folder(name: str, folder: str | Path, dtype: Any) -> Component | None:
    """A :class:`Component` from a diffusers sub-folder with a config.json
    (None when the folder is absent, e.g. a model saved without text encoder).
    Counts: the safetensors headers when weights are there (no torch import),
    else the config built on the meta device."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    if any(folder.glob("*.safetensors")):  # exact and cheap: the weights' headers, no torch import
        n, big = safetensors_params(folder)
    else:  # configs only (e.g. an architecture to be run with random weights)
        n, big = param_count_from_config(folder)
    b = dtype_bytes(dtype)
    return Component(name, n * b, big * b)
