"""Plan-time validation of Wan presets (no torch import).

A Wan stage table is a core stage table (``cinescale_post.contracts.stages``)
with Wan defaults plus four Wan keys, declared to the core as extra keys:

==================  ===================  =============================================
key                 default              meaning
==================  ===================  =============================================
shift               (model) / 9.0        flow-matching shift of the stage ("noise
                                         shifting"); first stage: recorded as null and
                                         run at 7 on a text-to-video model, 5 on an
                                         image-to-video one (the reference's I2V script);
                                         upscaled stages 9 (the reference's Pro pipeline;
                                         its 4K script gives 11)
ntk                 [1, 20, 20]          RoPE base factors (t, h, w); reference
                                         [1, 25, 25] for the upscaled stage
ntk_rule            "reference"          base * alpha; "ntk-aware": base * a^(d/(d-2))
attention_scale     true                 self-attention temperature by the reference
                                         rule; false: off; a number: fixed coef
==================  ===================  =============================================

Core keys get Wan defaults (ALGORITHM.md 4.4/4.5): ``steps`` 50,
``guidance`` 5.0, ``restart`` 0.3 (index 15 of 50), ``upscaler``
"latent-trilinear", ``fusion`` none, ``dilation`` false, ``cosine_scale``
none (no skip-residual blend on the video path).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cinescale_post.api import AdapterOptions, PlanError, StageSpec, check_path_option, parse_stages

WAN_KEYS = ("shift", "ntk", "ntk_rule", "attention_scale")
CORE_DEFAULTS = {"steps": 50, "guidance": 5.0, "restart": 0.3, "upscaler": "latent-trilinear", "fusion": None,
                 "dilation": False, "cosine_scale": None}
NTK_FIRST = (1.0, 20.0, 20.0)
NTK_UPSCALED = (1.0, 25.0, 25.0)
SHIFT_FIRST = 7.0
SHIFT_I2V = 5.0  # the reference's image-to-video script (sample_shift 5.0), first stage
SHIFT_UPSCALED = 9.0  # the reference Pro pipeline's new_shift (wan_video_pro.py; 3K script)
# Wan's negative prompt as used by the reference scripts (English rendering of the official one).
WAN_NEGATIVE = ("Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
                "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
                "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
                "fused fingers, still picture, messy background, three legs, many people in the background, "
                "walking backwards")


@dataclass(frozen=True)
class WanStage:
    """The Wan part of one stage."""

    shift: float | None = None  # None: the model's default (shift_default), first stage only
    ntk: tuple[float, float, float] = NTK_FIRST
    ntk_rule: str = "reference"
    attention_scale: Any = True  # True | False | coef (float)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "WanStage":
        v = dict(d)
        if v.get("shift") is not None:
            s = v["shift"]
            if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0 < s <= 100 or math.isnan(s):
                raise PlanError(f"{where}.shift = {s!r}", fix="use a number in (0, 100]; reference 7, 9 or 11")
            v["shift"] = float(s)
        if "ntk" in v:
            n = v["ntk"]
            if (not isinstance(n, (list, tuple)) or len(n) != 3
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in n)):
                raise PlanError(f"{where}.ntk = {n!r}", fix="give 3 positive factors [t, h, w], e.g. [1, 20, 20]")
            v["ntk"] = tuple(float(x) for x in n)
        if "ntk_rule" in v and v["ntk_rule"] not in ("reference", "ntk-aware"):
            raise PlanError(f"{where}.ntk_rule = {v['ntk_rule']!r}", fix='use "reference" or "ntk-aware"')
        if "attention_scale" in v:
            a = v["attention_scale"]
            if not (isinstance(a, bool) or (isinstance(a, (int, float)) and a > 0)):
                raise PlanError(f"{where}.attention_scale = {a!r}",
                                fix="true (reference rule), false, or a fixed coef such as 1.5")
            v["attention_scale"] = a if isinstance(a, bool) else float(a)
        return cls(**v)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ntk"] = list(self.ntk)
        return d

    def shift_for(self, i2v: bool) -> float:
        """The flow shift this stage runs at on a text- (``i2v`` false) or
        image-to-video model: the stage's own, else 7.0 / 5.0 (reference)."""
        if self.shift is not None:
            return self.shift
        return SHIFT_I2V if i2v else SHIFT_FIRST

    def items(self) -> tuple[tuple[str, Any], ...]:
        """``(key, value)`` pairs in ``WAN_KEYS`` order, for ``StageSpec.extra``."""
        return tuple((k, getattr(self, k)) for k in WAN_KEYS)


def parse_wan_stages(stages) -> tuple[list[StageSpec], list[WanStage]]:
    """Validate every stage table; raises PlanError naming the key.

    The core parses each table with Wan defaults and the Wan keys declared as
    extras; each returned spec's ``extra`` then holds all four validated Wan
    values, so ``spec.to_dict()`` is the full stage table and :func:`wan_stage`
    reads them back.
    """
    specs = parse_stages(list(stages) or [{}], extra_keys=WAN_KEYS, defaults=CORE_DEFAULTS)
    wans = []
    for i, s in enumerate(specs):
        # The upscaled stages' NTK and shift defaults differ from the first stage's
        # (reference 20 -> 25 and 7 -> 9).
        wans.append(WanStage.from_dict({**({"ntk": NTK_UPSCALED, "shift": SHIFT_UPSCALED} if i else {}),
                                        **s.extras}, f"stages.{i}"))
        if s.fusion is not None:
            raise PlanError(f"stages.{i}.fusion = {s.fusion!r}: scale fusion is a UNet (SDXL) technique",
                            fix='leave fusion out (the Wan path uses global attention with a temperature)')
        if s.dilation:
            raise PlanError(f"stages.{i}.dilation = true: the Wan DiT has no convolutions to dilate",
                            fix="leave dilation out")
    return [replace(s, extra=w.items()) for s, w in zip(specs, wans)], wans


def wan_stage(spec: StageSpec) -> WanStage:
    """The Wan values of a spec parsed by :func:`parse_wan_stages` (defaults when absent)."""
    return WanStage(**spec.extras)


@dataclass(frozen=True)
class WanOptions(AdapterOptions):
    """Wan's own ``[backend_options]`` (defaults: the CineScale reference). The
    driver's keys are validated by the core (docs/plugins.md): ``num_frames``
    (frames ``generate`` makes, 4n+1; Wan default 81), ``image`` (first frame
    of image-to-video), ``posterior`` (Wan default "mean": the Wan VAE encodes
    to its mean), ``noise`` ("reference": every noise tensor from a fresh CPU
    generator seeded with the window seed, in float32; or "stream"),
    ``noise_file`` (controlled mode) and ``context_parallel`` (every DiT
    forward split over the processes of a torchrun launch: the core's
    ``ops.context_parallel``, given to Wan because it declares its
    self-attention; see PARALLEL.md).

    fps: frame rate of generated clips (reference scripts save at 15).
    lora: path of a LoRA (.ckpt read with weights_only, or .safetensors); "" none.
    lora_scale: 1.0 (reference); lora_merge: true (reference merges into the weights).
    scheduler: "flow-euler" (reference FlowMatch Euler) or "model" (the folder's scheduler).
    sigmas: "reference" (linspace(1, 0, N+1)[:-1], then shifted) or "diffusers" (plain set_timesteps(N)).
    latent_dtype: "model" (reference: latents live in the model dtype, bf16) or "float32" (diffusers).
    vae_dtype: "auto" (default, reference: the model dtype (bf16) on an accelerator, float32 on CPU),
        "float32" or "model".
    timestep_dtype: "auto" (default, reference: the DiT timestep cast to the model dtype on an
        accelerator, which quantises t as the reference does; float32 on CPU), "float32" or "model".
    vae_tiling: tiled VAE encode/decode (reference: on); tile / stride in pixels.
    offload: "none", "model" (one component on the device at a time, resident until another needs it:
        diffusers' model offload; ``offload.py``).
    cfg_batch: run conditional and unconditional passes as one batch (reference: two passes).
    max_sequence_length: text tokens (Wan: 512).
    guidance_2: CFG of the low-noise expert of Wan 2.2 A14B (default: the stage's guidance).
    fit: "crop" (centre-crop a larger stage result to the output) or "resize".
    config: diffusers Wan folder giving configs and other components for a single .safetensors file.
    """

    fps: int = 15
    lora: str = ""
    lora_scale: float = 1.0
    lora_merge: bool = True
    scheduler: str = "flow-euler"
    sigmas: str = "reference"
    latent_dtype: str = "model"
    vae_dtype: str = "auto"
    timestep_dtype: str = "auto"
    vae_tiling: bool = True
    vae_tile: tuple[int, int] = (240, 416)  # reference: 30x52 latent tiles (wan_video_vae.py::tiled_decode)
    vae_stride: tuple[int, int] = (120, 208)  # reference: stride 15x26 latent cells
    offload: str = "none"
    cfg_batch: bool = False
    max_sequence_length: int = 512
    guidance_2: float | None = None
    fit: str = "crop"
    config: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "WanOptions":
        v = dict(d)  # only declared keys: the driver refused the others

        def choice(k, allowed):
            if k in v and v[k] not in allowed:
                raise PlanError(f"backend_options.{k} = {v[k]!r}", fix=f"use one of: {', '.join(allowed)}")

        def boolean(k):
            if k in v and not isinstance(v[k], bool):
                raise PlanError(f"backend_options.{k} = {v[k]!r} must be true or false")

        def integer(k, lo, hi):
            if k in v and (not isinstance(v[k], int) or isinstance(v[k], bool) or not lo <= v[k] <= hi):
                raise PlanError(f"backend_options.{k} = {v[k]!r}", fix=f"use an integer in {lo}..{hi}")

        integer("fps", 1, 1000)
        integer("max_sequence_length", 1, 4096)
        choice("scheduler", ("flow-euler", "model"))
        choice("sigmas", ("reference", "diffusers"))
        choice("latent_dtype", ("float32", "model"))
        choice("vae_dtype", ("auto", "float32", "model"))
        choice("timestep_dtype", ("auto", "float32", "model"))
        choice("offload", ("none", "model"))
        choice("fit", ("crop", "resize"))
        for k in ("lora_merge", "vae_tiling", "cfg_batch"):
            boolean(k)
        for k in ("vae_tile", "vae_stride"):
            if k in v:
                t = v[k]
                if (not isinstance(t, (list, tuple)) or len(t) != 2
                        or not all(isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 4096 for x in t)):
                    raise PlanError(f"backend_options.{k} = {t!r}", fix="give [height, width] in pixels, 16..4096")
                v[k] = (int(t[0]), int(t[1]))
        if "lora_scale" in v:
            s = v["lora_scale"]
            if not isinstance(s, (int, float)) or isinstance(s, bool):
                raise PlanError(f"backend_options.lora_scale = {s!r} must be a number (reference 1.0)")
            v["lora_scale"] = float(s)
        if v.get("guidance_2") is not None:
            g = v["guidance_2"]
            if not isinstance(g, (int, float)) or isinstance(g, bool) or not 0 <= g <= 100:
                raise PlanError(f"backend_options.guidance_2 = {g!r}", fix="use a number in 0..100")
            v["guidance_2"] = float(g)
        check_path_option(v, "lora", "a LoRA file")
        check_path_option(v, "config", "a diffusers Wan folder", folder=True)
        if v.get("lora"):
            suffix = Path(v["lora"]).suffix.lower()
            if suffix not in (".safetensors", ".ckpt", ".pt", ".pth"):
                raise PlanError(f"backend_options.lora = {v['lora']!r}: unsupported file type",
                                fix="use a .safetensors or .ckpt LoRA")
        return cls(**v)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vae_tile"], d["vae_stride"] = list(self.vae_tile), list(self.vae_stride)
        return d


def in_model_dtype(choice: str, device: Any) -> bool:
    """Whether a ``"auto"``/``"float32"``/``"model"`` dtype option runs in the
    model dtype on ``device``: "auto" does on accelerators (the reference's bf16
    on GPU) and keeps float32 on CPU.

    >>> in_model_dtype("auto", "cuda:0"), in_model_dtype("auto", "cpu"), in_model_dtype("model", "cpu")
    (True, False, True)
    """
    return choice == "model" or (choice == "auto" and not str(device).startswith("cpu"))


__all__ = ["NTK_FIRST", "NTK_UPSCALED", "SHIFT_FIRST", "SHIFT_I2V", "WAN_KEYS", "WAN_NEGATIVE", "WanOptions", "WanStage", "in_model_dtype", "parse_wan_stages",
           "wan_stage"]
