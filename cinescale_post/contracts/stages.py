"""The stage ladder: parsed, validated stage specs and their resolution to
pixel sizes. Pure Python (no torch): ``plan.build`` calls this through a
backend's ``validate``.

A stage table in a preset (``[[stages]]``) accepts these keys (defaults are
the FreeScale reference, ALGORITHM.md section 1.1):

=================  ==============  ==================================================
key                default         meaning
=================  ==============  ==================================================
size               (auto)          ``"output"``, ``"base"`` or ``[width, height]``
scale              (none)          size as a multiple of the model's base size
steps              50              scheduler steps of this stage
restart            0.3             upscaled stages resume at ``int(restart * steps)``
restart_step       (none)          explicit step index, overrides ``restart``
guidance           7.5             classifier-free guidance scale
upscaler           "vae-bicubic"   how the previous result is enlarged
fusion             "scale-fusion"  attention fusion in upscaled stages ("none": off)
fast_mode          false           dilated-sampling global branch of scale fusion
blur               "3d"            "3d" (reference), "3d-separable", "spatial"
blur_sigma         1.0             Gaussian sigma of the fusion blur
jitter             true            random window jitter (reference)
window_batch       0               windows per attention call (0: all at once)
dilation           true            restrained dilated convolution
dilate_tau         35              dilation active for step index < dilate_tau
cosine_scale       2.0             skip-residual exponent (``none``/false: no blend)
cosine_scale_bg    (none)          exponent outside the detail mask (mask variant)
=================  ==============  ==================================================

A backend may declare keys of its own (``parse_stages(stages, extra_keys=...)``,
e.g. Wan's ``shift``): they are written flat in the stage table, kept raw in
:attr:`StageSpec.extra` for the backend to validate, and flattened back by
``to_dict``. Any other key is refused.

In ``generate`` mode the first stage is the base stage (sampled from noise,
no fusion, no dilation, no blend); in ``render`` mode every stage refines the
previous result (the source frame plays the base stage's part).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from cinescale_post.contracts.errors import PlanError

UPSCALER_DEFAULT = "vae-bicubic"
FUSION_DEFAULT = "scale-fusion"
BLURS = ("3d", "3d-separable", "spatial")


@dataclass(frozen=True)
class StageSpec:
    size: Any = None  # None | "output" | "base" | (w, h)
    scale: float | None = None
    steps: int = 50
    restart: float = 0.3
    restart_step: int | None = None
    guidance: float = 7.5
    upscaler: str = UPSCALER_DEFAULT
    fusion: str | None = FUSION_DEFAULT
    fast_mode: bool = False
    blur: str = "3d"
    blur_sigma: float = 1.0
    jitter: bool = True
    window_batch: int = 0
    dilation: bool = True
    dilate_tau: int = 35
    cosine_scale: float | None = 2.0
    cosine_scale_bg: float | None = None
    #: this stage's own prompt and negative prompt (None: the render's): local editing keeps the
    #: structure of the stage before and changes what the upscaled stage adds (docs/method.md)
    prompt: str | None = None
    negative_prompt: str | None = None
    # Backend-declared keys as (key, value) pairs: a tuple keeps the spec frozen
    # and hashable; the backend validates the values, the core only carries them.
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def extras(self) -> dict:
        """The backend-declared keys as a dict."""
        return dict(self.extra)

    @property
    def restart_index(self) -> int:
        """Step index an upscaled stage resumes at (reference: ``int(0.3 * steps)``)."""
        return self.restart_step if self.restart_step is not None else int(self.restart * self.steps)

    @classmethod
    def from_dict(cls, d: dict, where: str = "stages.0", extra_keys: Sequence[str] = ()) -> "StageSpec":
        """Validate one stage table; raise :class:`PlanError` naming the key.
        ``extra_keys``: backend-declared keys, carried unvalidated in ``extra``."""
        if not isinstance(d, dict):
            raise PlanError(f"{where} must be a table, got {type(d).__name__}")
        allowed = ({f.name for f in fields(cls)} - {"extra"}) | set(extra_keys)
        unknown = sorted(set(d) - allowed)
        if unknown:
            shown = ", ".join(f"{k} = {d[k]!r}" for k in unknown)
            raise PlanError(f"{where}: unknown key(s) {shown}", fix=f"use only: {', '.join(sorted(allowed))}")
        v = {k: x for k, x in d.items() if k not in extra_keys}
        extra = tuple((k, d[k]) for k in extra_keys if k in d)
        size = v.get("size")
        if size is not None:
            if isinstance(size, str):
                if size not in ("output", "base"):
                    raise PlanError(f"{where}.size = {size!r}", fix='use "output", "base" or [width, height]')
            elif (isinstance(size, (list, tuple)) and len(size) == 2
                  and all(isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 16384 for x in size)):
                v["size"] = (int(size[0]), int(size[1]))
            else:
                raise PlanError(f"{where}.size = {size!r}", fix="use [width, height] with 16..16384 pixels")
        if v.get("scale") is not None:
            if size is not None:
                raise PlanError(f"{where}: both size and scale are given", fix="keep one of them")
            _num(v, "scale", where, lo=0.0625, hi=64)
        _int(v, "steps", where, lo=1, hi=1000)
        _num(v, "restart", where, lo=0.0, hi=0.999)
        if v.get("restart_step") is not None:
            _int(v, "restart_step", where, lo=0, hi=v.get("steps", 50) - 1)
        _num(v, "guidance", where, lo=0.0, hi=100.0)
        for k in ("upscaler",):
            if k in v and (not isinstance(v[k], str) or not v[k]):
                raise PlanError(f"{where}.{k} = {v[k]!r}", fix="give a registered name (`cinescale plugins`)")
        if "fusion" in v:
            f = v["fusion"]
            if f in (None, False, "none", ""):
                v["fusion"] = None
            elif not isinstance(f, str):
                raise PlanError(f"{where}.fusion = {f!r}", fix='give a fusion name or "none"')
        for k in ("prompt", "negative_prompt"):
            if k in v and v[k] is not None and not isinstance(v[k], str):
                raise PlanError(f"{where}.{k} = {v[k]!r} must be a string", fix=f'e.g. {where}.{k} = "a red coat"')
        for k in ("fast_mode", "jitter", "dilation"):
            if k in v and not isinstance(v[k], bool):
                raise PlanError(f"{where}.{k} = {v[k]!r} must be true or false")
        if "blur" in v and v["blur"] not in BLURS:
            raise PlanError(f"{where}.blur = {v['blur']!r}", fix=f"use one of: {', '.join(BLURS)}")
        _num(v, "blur_sigma", where, lo=1e-3, hi=100.0)
        _int(v, "window_batch", where, lo=0, hi=1 << 20)
        _int(v, "dilate_tau", where, lo=0, hi=100000)
        for k in ("cosine_scale", "cosine_scale_bg"):
            if k in v and v[k] in (None, False, "none"):
                v[k] = None
            else:
                _num(v, k, where, lo=0.0, hi=100.0)
        return cls(**v, extra=extra)

    def to_dict(self) -> dict:
        """The stage table: core keys, then the backend-declared keys flat
        (tuples as lists, so ``from_dict(to_dict())`` round-trips through JSON)."""
        d = asdict(self)
        d.pop("extra")
        for k in ("prompt", "negative_prompt"):  # left out when unset: plans without them read as before
            if d[k] is None:
                d.pop(k)
        if isinstance(d["size"], tuple):
            d["size"] = list(d["size"])
        d.update((k, list(x) if isinstance(x, tuple) else x) for k, x in self.extra)
        return d


def _int(v: dict, k: str, where: str, lo: int, hi: int) -> None:
    if k not in v:
        return
    x = v[k]
    if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
        raise PlanError(f"{where}.{k} = {x!r}", fix=f"use an integer in {lo}..{hi}")


def _num(v: dict, k: str, where: str, lo: float, hi: float) -> None:
    if k not in v:
        return
    x = v[k]
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not lo <= x <= hi or math.isnan(x):
        raise PlanError(f"{where}.{k} = {x!r}", fix=f"use a number in {lo}..{hi}")
    v[k] = float(x)


def parse_stages(stages: Sequence[dict], *, extra_keys: Sequence[str] = (),
                 defaults: dict | None = None) -> list[StageSpec]:
    """Validate every stage table (``[[stages]]`` of a preset).

    ``extra_keys``: keys the backend declares (kept raw in ``StageSpec.extra``);
    ``defaults``: the backend's defaults for any key, under each table.
    """
    out = []
    for i, s in enumerate(stages):
        if not isinstance(s, Mapping):
            raise PlanError(f"stages.{i} must be a table, got {type(s).__name__}")
        out.append(StageSpec.from_dict({**(defaults or {}), **s}, f"stages.{i}", tuple(extra_keys)))
    return out


# ------------------------------------------------------------------ resolution


@dataclass(frozen=True)
class ResolvedStage:
    """A stage with its pixel size and what runs in it."""

    index: int
    spec: StageSpec
    size: tuple[int, int]  # (width, height) pixels
    base: bool  # sampled from noise (generate mode, first stage)
    restart_index: int  # 0 for the base stage
    dilation: int  # factor; 1 = off
    scale: tuple[int, int]  # (s_h, s_w) = size // base, at least 1

    @property
    def fusion(self) -> str | None:
        return None if self.base else self.spec.fusion


def snap(x: float, multiple: int) -> int:
    """Nearest multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, int(round(x / multiple)) * multiple)


def default_stages(mode: str, base_size: tuple[int, int], output: tuple[int, int]) -> list[StageSpec]:
    """The ladder when a preset gives none. ``generate``: sizes halve from the
    output down to the base size (4096 -> 1024, 2048, 4096); ``render``: one
    refine stage at the output size."""
    if mode != "generate":
        return [StageSpec(size="output")]
    ratio = max(output[0] / base_size[0], output[1] / base_size[1])
    n = 1 + max(0, math.ceil(math.log2(ratio) - 1e-9)) if ratio > 1 else 1
    return [StageSpec(size=(max(16, round(output[0] / 2 ** (n - 1 - k))), max(16, round(output[1] / 2 ** (n - 1 - k)))))
            for k in range(n)]


def resolve_ladder(specs: Sequence[StageSpec], *, mode: str, base_size: tuple[int, int],
                   output: tuple[int, int], multiple: int = 8,
                   dilation_base: tuple[int, int] | None = None) -> list[ResolvedStage]:
    """Pixel sizes, restart indices and dilation factors for ``specs``.

    ``base_size`` (width, height) comes from the model's config (1024 for
    SDXL); sizes are snapped to ``multiple`` pixels (the backend's
    ``size_multiple``). The dilation factor is ``width // base_width`` and the
    fusion scale numbers ``(height // base_h, width // base_w)`` (reference).
    ``dilation_base``: the width the dilation factor divides by when it is not
    the base size (SDXL-Turbo: base 512, dilation ``W // 1024``, as the
    reference's turbo pipeline).
    """
    if mode not in ("generate", "render"):
        raise PlanError(f"mode {mode!r}", fix="use generate or render")
    specs = list(specs) or default_stages(mode, base_size, output)
    dil_w = int((dilation_base or base_size)[0])
    out = []
    for i, s in enumerate(specs):
        if s.size == "output" or (s.size is None and s.scale is None):
            w, h = output
        elif s.size == "base":
            w, h = base_size
        elif s.scale is not None:
            w, h = base_size[0] * s.scale, base_size[1] * s.scale
        else:
            w, h = s.size
        w, h = snap(w, multiple), snap(h, multiple)
        base = mode == "generate" and i == 0
        out.append(ResolvedStage(
            index=i, spec=s, size=(w, h), base=base,
            restart_index=0 if base else s.restart_index,
            dilation=max(1, w // dil_w) if (s.dilation and not base) else 1,
            scale=(max(1, h // base_size[1]), max(1, w // base_size[0]))))
    return out


__all__ = ["ResolvedStage", "StageSpec", "default_stages", "parse_stages", "resolve_ladder", "snap"]
