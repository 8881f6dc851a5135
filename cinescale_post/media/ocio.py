"""OpenColorIO colour management: what the model sees vs what the plate is.

Diffusion models are trained on display-referred, sRGB-like images; camera
log and scene-linear EXR plates are not that (reference/MEDIA_IO.md section
6). With ``[colour] mode = "ocio"`` every source frame is converted from the
plate's colour space (``input``) to the model's (``model``) before the
backend, and the result back with the exact inverse processor, so the output
stays in the plate's space (EXR half/float keeps values above 1.0).

The config is pinned by its full versioned URI: the ``ocio://default`` and
``-latest`` aliases move between OCIO releases (ACES 1.3 in 2.2, ACES 2.1 in
2.6). ``config = "$OCIO"`` uses the studio's ``$OCIO`` config instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import PlanError

DEFAULT_CONFIG = "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
DEFAULT_MODEL_SPACE = "sRGB Encoded Rec.709 (sRGB)"
MODES = ("video", "ocio")


def load_config(uri: str):
    """An OCIO config from a pinned ``ocio://`` URI, a file, or ``$OCIO``."""
    import PyOpenColorIO as ocio

    if uri in ("$OCIO", "env"):
        path = os.environ.get("OCIO")
        if not path:
            raise PlanError('colour.config = "$OCIO" but $OCIO is not set',
                            fix=f"set $OCIO to the studio config, or give a pinned URI such as {DEFAULT_CONFIG}")
        uri = path
    if uri.startswith("ocio://") and (uri.endswith("default") or uri.endswith("-latest")):
        raise PlanError(f"colour.config = {uri!r} changes meaning between OCIO releases",
                        fix=f"pin the full versioned URI, e.g. {DEFAULT_CONFIG}")
    try:
        return ocio.Config.CreateFromFile(uri)
    except Exception as exc:  # OCIO raises its own Exception type
        names = ", ".join(f"ocio://{n[0]}" for n in ocio.BuiltinConfigRegistry().getBuiltinConfigs())
        raise PlanError(f"colour.config = {uri!r} cannot be loaded ({exc})",
                        fix=f"give a config file path or one of the built-in URIs: {names}") from exc


def validate(spec: dict, origin: str) -> dict:
    """Normalise the ``[colour]`` table; raise PlanError naming key and value."""
    mode = spec.get("mode", "video")
    if mode not in MODES:
        raise PlanError(f"preset {origin}: colour.mode = {mode!r} is not allowed", fix="use video or ocio")
    if mode == "video":
        return {"mode": "video"}
    uri = spec.get("config") or DEFAULT_CONFIG
    config = load_config(uri)
    names = {cs.getName() for cs in config.getColorSpaces()}
    out = {"mode": "ocio", "config": uri, "input": spec.get("input", ""),
           "model": spec.get("model") or DEFAULT_MODEL_SPACE}
    for key in ("input", "model"):
        if out[key] not in names:
            some = ", ".join(sorted(names)[:25])
            raise PlanError(f"preset {origin}: colour.{key} = {out[key]!r} is not a colour space of {uri}",
                            fix=f"use one of: {some}, ... (see the config)")
    return out


@dataclass
class Converter:
    """Forward (plate -> model) and exact inverse (model -> plate) CPU processors."""

    spec: dict

    def __post_init__(self):
        config = load_config(self.spec["config"])
        self._fwd = config.getProcessor(self.spec["input"], self.spec["model"]).getDefaultCPUProcessor()
        self._inv = config.getProcessor(self.spec["model"], self.spec["input"]).getDefaultCPUProcessor()

    @staticmethod
    def _apply(proc, rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        proc.applyRGB(out)
        return out

    def to_model(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 in the plate's space -> the model's (a copy)."""
        return self._apply(self._fwd, rgb)

    def from_model(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 in the model's space -> the plate's (a copy)."""
        return self._apply(self._inv, rgb)
