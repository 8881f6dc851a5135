"""The frozen plan: everything a render needs, decided before any model or
media work (``pipeline.plan.build`` makes one; the runtime trusts it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from cinescale_post.contracts.media import Colour, SourceInfo
from cinescale_post.media.sequence import compress_ranges
from cinescale_post.pipeline.geometry import Geometry

SCHEMA = 1
FITS = ("pad", "crop", "stretch")
BLENDS = ("linear", "hann")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class OutputPlan:
    path: str  # movie file, or printf pattern for sequences
    kind: str  # "movie" | "sequence"
    codec: str
    writer: str
    options: Mapping[str, Any]
    width: int
    height: int
    fit: str
    audio: bool
    chunk: int  # frames per chunk file for movies (0: one chunk)
    colour: Colour
    geometry: Geometry | None
    audio_mode: str = "copy"  # media.audio.AUDIO_MODES; "none" when audio is False
    #: "" or the association written ("premultiplied" | "straight"), media.alpha
    alpha: str = ""
    #: how the source's alpha is read ("" when there is none or it is ignored)
    source_alpha: str = ""


@dataclass(frozen=True)
class WindowPlan:
    size: int
    overlap: int
    blend: str
    #: frame numbers where a new shot starts (``window.cuts``, conform's edit points):
    #: windows never span one (``pipeline.windows.layout``)
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    preset: str
    preset_origin: str
    mode: str  # "render" | "generate"
    input: str | None
    source: SourceInfo | None
    output: OutputPlan
    backend: str
    backend_options: Mapping[str, Any]
    stages: tuple[Mapping[str, Any], ...]
    model: str | None
    device: str
    dtype: str
    seed: int
    frames: tuple[int, ...]
    handles: int
    window: WindowPlan
    prompt: str
    negative_prompt: str
    description: str = ""
    colour: Mapping[str, Any] = field(default_factory=lambda: {"mode": "video"})
    memory: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: what readers do with bad / missing frames (``contracts.media.ReadPolicy`` fields).
    reading: Mapping[str, str] = field(default_factory=lambda: {"on_bad_frame": "error", "missing": "error"})
    #: ``pipeline.plan_matte``: source, kind, channel, mode, missing; empty without a matte.
    matte: Mapping[str, Any] = field(default_factory=dict)

    @property
    def read_policy(self):
        from cinescale_post.contracts.media import ReadPolicy

        return ReadPolicy(**dict(self.reading))

    def to_dict(self) -> dict:
        d = {
            "schema": SCHEMA,
            "preset": self.preset,
            "preset_origin": self.preset_origin,
            "mode": self.mode,
            "input": self.input,
            "source": self.source.to_dict() if self.source else None,
            "output": {**asdict(self.output), "colour": self.output.colour.to_dict(),
                       "options": dict(self.output.options)},
            "backend": self.backend,
            "backend_options": dict(self.backend_options),
            "stages": [dict(s) for s in self.stages],
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            "frames": compress_ranges(list(self.frames)),
            "frame_count": len(self.frames),
            "handles": self.handles,
            "window": {k: (list(v) if k == "cuts" else v) for k, v in asdict(self.window).items()
                       if k != "cuts" or v},  # no cuts: the digest of a plan as before
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "description": self.description,
            "colour": dict(self.colour),
            "reading": dict(self.reading),
            "warnings": list(self.warnings),
        }
        if self.memory:
            d["memory_estimate"] = dict(self.memory)
        if self.matte:  # no matte: the digest of a plan as before
            d["matte"] = dict(self.matte)
        return json.loads(json.dumps(d, default=str))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def digest(self) -> str:
        """Hash of everything that changes pixels (not the frame selection):
        two runs with the same digest may share one output."""
        d = self.to_dict()
        for k in ("frames", "frame_count", "warnings", "preset_origin", "description", "input"):
            d.pop(k, None)
        # Of the memory plan only the VAE tile changes pixels (tiled decode);
        # free-memory numbers and offload do not. A smaller window is in "window".
        mem = d.pop("memory_estimate", None) or {}
        d["vae_tile"] = (mem.get("choice") or {}).get("vae_tile")
        d["output"].pop("path", None)  # the same render may be moved or mounted elsewhere
        if d["source"]:
            d["source"] = {k: v for k, v in d["source"].items() if k not in ("path",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
