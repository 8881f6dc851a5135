"""The render driver's own ``backend_options``: the method and pipeline keys
every model adapter shares (noise policy, temporal post-ops, posterior...),
validated here once, at plan time, without torch. An adapter declares which
noise policies it takes and its defaults (``Capabilities``); the remaining
keys of ``[backend_options]`` are the adapter's own, declared by its
``options_type`` (:func:`assign_options`).

Image layout (frames refined one by one):

===============  ==========  ============================================================
key              default     meaning
===============  ==========  ============================================================
noise            "shot"      re-noise field per frame: "shot", "frame" or "flow"
                             (:mod:`.noise`)
key_every        8           key-frame grid (source frames) of flow noise and cross-frame
flow             "dis"       optical flow of noise = "flow": "dis" or "farneback"
flow_warp        "bilinear"  how flow noise resamples the key field: "bilinear"/"nearest"
anchor_lowfreq   0.0         0..1 low-frequency anchoring of renders to the source (0: off,
                             the reference, which has no such step)
anchor_sigma     1.0         its low-pass standard deviation in source pixels
anchor_filter    "gaussian"  "gaussian" or "box"
cross_frame      false       every frame batched with its key frame (``cross-frame`` fusion)
shot_frame       (first)     frame number whose seed is the shot's
posterior        "sample"    VAE posterior: "sample" (reference) or "mean"
jitter           true        random window jitter of scale fusion
keep_stages      false       generate also writes the earlier stages (``<name>.stage0.####.exr``...)
detail_mask      (none)      image file for the per-pixel variant of the cosine blend
                             (reference: any non-zero pixel is detail)
detail_mask_soft false       the mask's grey level weighs cosine_scale / cosine_scale_bg
===============  ==========  ============================================================

Video layout (a window denoised as a whole): ``noise`` ("reference" or
"stream"), ``noise_file`` (safetensors ``base_noise``/``renoise.K``:
controlled mode), ``posterior``, ``num_frames`` (frames ``generate`` makes,
by the model's frame rule) and ``image`` (first frame of image-to-video).

Either layout: ``context_parallel`` ({} off; ``{ulysses = N}`` and/or
``{ring = N}``, optional ``attention_backend``, ``anything``): every denoiser
forward split over the N processes of a torchrun launch
(:mod:`cinescale_post.ops.context_parallel`), for adapters whose
``Capabilities.attention`` declares their self-attention; recorded only when set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.options import DRIVER_KEYS, check_path_option
from cinescale_post.cascade.noise import POLICIES

FLOW_METHODS = ("dis", "farneback")  # = ops.temporal.FLOW_METHODS (no torch at plan time)
LOWPASS_KINDS = ("gaussian", "box")  # = ops.temporal.LOWPASS_KINDS
WARP_MODES = ("bilinear", "nearest")  # = ops.temporal.WARP_MODES
CROSS_FRAME_FUSION = "cross-frame"

@dataclass(frozen=True)
class DriverOptions:
    noise: str = "shot"
    key_every: int = 8
    flow: str = "dis"
    flow_warp: str = "bilinear"
    anchor_lowfreq: float = 0.0  # the reference has no anchoring (issue 12); the -anchored presets use 1.0
    anchor_sigma: float = 1.0
    anchor_filter: str = "gaussian"
    cross_frame: bool = False
    shot_frame: int | None = None
    posterior: str = "sample"
    jitter: bool = True
    keep_stages: bool = False
    detail_mask: str | None = None
    detail_mask_soft: bool = False
    noise_file: str = ""
    num_frames: int = 1
    image: str = ""
    context_parallel: dict = field(default_factory=dict)  # ops.context_parallel, validated there

    @staticmethod
    def keys(layout: str) -> tuple[str, ...]:
        return DRIVER_KEYS[layout]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], caps: Any, source: Any = None) -> "DriverOptions":
        """Validate the driver's keys of ``d`` (others are ignored) for an
        adapter's ``caps``; raise :class:`PlanError` naming the key."""
        keys = cls.keys(caps.latent_layout)
        v = {**{"noise": caps.noise[0]}, **{k: x for k, x in dict(caps.option_defaults).items() if k in keys},
             **{k: d[k] for k in keys if k in d}}
        if v["noise"] not in caps.noise or POLICIES.get(v["noise"]) is None:
            allowed = ", ".join(caps.noise)
            raise PlanError(f"backend_options.noise = {v['noise']!r} is not one of {allowed}",
                            fix=f"use one of: {allowed} (default {caps.noise[0]!r})")
        for k in ("jitter", "keep_stages", "cross_frame", "detail_mask_soft"):
            if k in v and not isinstance(v[k], bool):
                raise PlanError(f"backend_options.{k} = {v[k]!r} must be true or false")
        if v.get("posterior", "sample") not in ("sample", "mean"):
            raise PlanError(f"backend_options.posterior = {v['posterior']!r}", fix='use "sample" or "mean"')
        for k, allowed, fix in (("flow", FLOW_METHODS, 'use "dis" or "farneback"'),
                                ("flow_warp", WARP_MODES, 'use "bilinear" or "nearest"'),
                                ("anchor_filter", LOWPASS_KINDS, 'use "gaussian" or "box"')):
            if k in v and v[k] not in allowed:
                raise PlanError(f"backend_options.{k} = {v[k]!r} is not one of {', '.join(allowed)}", fix=fix)
        ke = v.get("key_every", 8)
        if not isinstance(ke, int) or isinstance(ke, bool) or not 1 <= ke <= 100000:
            raise PlanError(f"backend_options.key_every = {ke!r} must be an integer in 1..100000",
                            fix="give the key-frame spacing in source frames, e.g. 8")
        for k, lo, hi, lo_open in (("anchor_lowfreq", 0.0, 1.0, False), ("anchor_sigma", 0.0, 1000.0, True)):
            if k not in v:
                continue
            x = v[k]
            if (not isinstance(x, (int, float)) or isinstance(x, bool) or math.isnan(x) or x > hi
                    or (x <= lo if lo_open else x < lo)):
                rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
                raise PlanError(f"backend_options.{k} = {x!r} must be a number in {rng}",
                                fix=("strength of low-frequency anchoring, 0 = off" if k == "anchor_lowfreq"
                                     else "low-pass standard deviation in source pixels, e.g. 1.0"))
            v[k] = float(x)
        if caps.latent_layout == "image":
            if v.get("shot_frame") is None:
                v["shot_frame"] = source.first_frame if (source is not None and source.frame_numbers) else None
            elif not isinstance(v["shot_frame"], int) or isinstance(v["shot_frame"], bool):
                raise PlanError(f"backend_options.shot_frame = {v['shot_frame']!r} must be a frame number")
        dm = v.get("detail_mask")
        if dm is not None and (not isinstance(dm, str) or not Path(dm).is_file()):
            raise PlanError(f"backend_options.detail_mask = {dm!r} is not an image file",
                            fix="give the path of a PNG/TIFF/EXR mask (bright = detail region)")
        if "num_frames" in v:
            n = v["num_frames"]
            rule = caps.frame_rule
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100000:
                raise PlanError(f"backend_options.num_frames = {n!r}", fix="use an integer in 1..100000")
            if not rule.accepts(n):
                lo = rule.largest_at_most(n)
                raise PlanError(f"backend_options.num_frames = {n} is not {rule.multiple}n+{rule.offset} (the "
                                f"model's frame rule)", fix=f"use {lo} or {lo + rule.multiple}")
        for k, what in (("image", "an image file"), ("noise_file", "a .safetensors file")):
            check_path_option(v, k, what)
        if "context_parallel" in v:
            from cinescale_post.ops.context_parallel_spec import parse_context_parallel

            v["context_parallel"] = parse_context_parallel(v["context_parallel"]).to_dict()
            if v["context_parallel"] and not caps.attention:
                raise PlanError("backend_options.context_parallel is set, but this backend declares no "
                                "self-attention to split (Capabilities.attention)",
                                fix="leave context_parallel out; it is for DiT backends such as wan")
        return cls(**v)

    def to_dict(self, layout: str) -> dict:
        d = asdict(self)
        out = {k: d[k] for k in self.keys(layout)}
        if not out.get("context_parallel"):  # off: not recorded, so plans without it read as before
            out.pop("context_parallel", None)
        return out


def assign_options(options: Mapping[str, Any], layout: str, adapter_keys: Sequence[str],
                   backend: str) -> tuple[dict, dict]:
    """(driver's, adapter's) keys of a ``[backend_options]`` table, each key
    going to whoever declared it: the driver's ``DRIVER_KEYS`` of ``layout``
    or the adapter's ``options_type.keys()``. An undeclared key raises
    :class:`PlanError` naming both lists."""
    driver = DRIVER_KEYS[layout]
    unknown = sorted(k for k in options if k not in driver and k not in adapter_keys)
    if unknown:
        own = ", ".join(sorted(adapter_keys)) or "(none)"
        raise PlanError(f"backend_options: unknown key(s) {', '.join(unknown)} for backend {backend!r}",
                        fix=f"use only its options ({own}) or the driver's ({', '.join(sorted(driver))}); "
                            "docs/plugins.md lists them")
    return ({k: x for k, x in options.items() if k in driver}, {k: x for k, x in options.items() if k not in driver})


__all__ = ["CROSS_FRAME_FUSION", "DriverOptions", "assign_options"]
