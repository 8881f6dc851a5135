"""SDXL's own ``[backend_options]`` and the model facts they default to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cinescale_post.api import AdapterOptions, PlanError

# FreeScale's restrained-dilation list (ALGORITHM.md section 2.1) and the
# self-attention layers of every BasicTransformerBlock (section 3.1).
SDXL_DILATED_CONVS = (
    "down_blocks.1.downsamplers.0.conv",
    "down_blocks.2.resnets.0.conv1", "down_blocks.2.resnets.0.conv2",
    "down_blocks.2.resnets.1.conv1", "down_blocks.2.resnets.1.conv2",
    "mid_block.resnets.0.conv1", "mid_block.resnets.0.conv2",
    "mid_block.resnets.1.conv1", "mid_block.resnets.1.conv2",
)
SDXL_SELF_ATTENTION = ("*transformer_blocks.*.attn1.processor",)
TURBO_SAMPLE_SIZE = 64  # stabilityai/sdxl-turbo's unet/config.json: a 512-pixel base
FREEU_DEFAULT = {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4}
FREEU_RULES = ("reference", "stage")


@dataclass(frozen=True)
class SDXLOptions(AdapterOptions):
    """SDXL's own ``[backend_options]`` (the driver's keys — noise, anchoring,
    cross_frame, detail_mask... — are documented in docs/plugins.md).

    freeu: true (b1=1.1, b2=1.2, s1=0.6, s2=0.4), false, or a table with those keys and ``rule``:
        "reference" (default: at 1280/640 hidden channels, as FreeScale) or "stage" (decoder stages
        0 and 1 of any width, ``ops.freeu``).
    vae_tiling: tiled VAE encode/decode above the base size (reference: always on).
    vae_fp32: "auto" (fp32 when the VAE config says force_upcast and dtype is fp16), true, false.
    config: diffusers SDXL folder giving the configs for a single .safetensors file.
    dilate_convs: module names to dilate (default: FreeScale's nine SDXL convolutions).
    turbo: SDXL-Turbo as the reference's turbo pipeline (fusion windows keyed to a 512 base,
        dilation ``W // 1024``): "auto" (default: detected from the UNet config, sample_size 64
        = a 512-pixel base on an SDXL UNet), true (a 512 base whatever the config says), false.
    """

    freeu: Any = True
    turbo: Any = "auto"
    vae_tiling: bool = True
    vae_fp32: Any = "auto"
    config: str | None = None
    dilate_convs: tuple[str, ...] = SDXL_DILATED_CONVS

    @classmethod
    def from_dict(cls, d: dict) -> "SDXLOptions":
        v = dict(d)  # only declared keys: the driver refused the others
        f = v.get("freeu", True)
        if f is True:
            v["freeu"] = dict(FREEU_DEFAULT)
        elif f is False or f is None:
            v["freeu"] = None
        elif isinstance(f, dict):
            rule = f.get("rule", "reference")
            nums = {k: x for k, x in f.items() if k != "rule"}
            bad = sorted(set(nums) - set(FREEU_DEFAULT))
            if bad or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums.values()):
                raise PlanError(f"backend_options.freeu = {f!r}", fix="use true, false or {b1, b2, s1, s2} numbers")
            if rule not in FREEU_RULES:
                raise PlanError(f"backend_options.freeu.rule = {rule!r}", fix='use "reference" or "stage"')
            v["freeu"] = {**FREEU_DEFAULT, **{k: float(x) for k, x in nums.items()}}
            if rule != "reference":
                v["freeu"]["rule"] = rule
        else:
            raise PlanError(f"backend_options.freeu = {f!r}", fix="use true, false or a table {b1, b2, s1, s2}")
        if v.get("turbo", "auto") != "auto" and not isinstance(v.get("turbo"), bool):
            raise PlanError(f"backend_options.turbo = {v['turbo']!r}", fix='use "auto", true or false')
        if "vae_tiling" in v and not isinstance(v["vae_tiling"], bool):
            raise PlanError(f"backend_options.vae_tiling = {v['vae_tiling']!r} must be true or false")
        if v.get("vae_fp32", "auto") != "auto" and not isinstance(v.get("vae_fp32"), bool):
            raise PlanError(f"backend_options.vae_fp32 = {v['vae_fp32']!r}", fix='use "auto", true or false')
        if v.get("config") is not None and not isinstance(v["config"], str):
            raise PlanError(f"backend_options.config = {v['config']!r} must be a folder path")
        if "dilate_convs" in v:
            dc = v["dilate_convs"]
            if not isinstance(dc, (list, tuple)) or not all(isinstance(x, str) and x for x in dc):
                raise PlanError(f"backend_options.dilate_convs = {dc!r}", fix="give a list of module names")
            v["dilate_convs"] = tuple(dc)
        return cls(**v)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilate_convs"] = list(self.dilate_convs)
        return d


__all__ = ["FREEU_DEFAULT", "SDXLOptions", "SDXL_DILATED_CONVS", "SDXL_SELF_ATTENTION", "TURBO_SAMPLE_SIZE"]
