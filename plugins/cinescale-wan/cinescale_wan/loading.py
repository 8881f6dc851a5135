"""Loading Wan weights from disk (never downloads, never unpickles) and
telling which Wan variant was found.

* a local diffusers folder (``model_index.json``): ``from_pretrained(local_files_only=True,
  use_safetensors=True)``; components saved as ``null`` (no text encoder) are passed as None;
* a single ``.safetensors`` transformer (original Wan keys or diffusers keys):
  ``WanTransformer3DModel.from_single_file`` with the configs and the other
  components from a diffusers folder (``backend_options.config``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cinescale_post.api import ModelPlan, WeightsError, loader_errors, local_weights

log = logging.getLogger(__name__)

_KNOWN_SIZES = {(1536, 30): "1.3B", (5120, 40): "14B", (3072, 30): "5B"}


@dataclass(frozen=True)
class WanVariant:
    """What the weights are. ``name`` e.g. "wan2.1-t2v-1.3B"; ``tasks`` subset
    of {"t2v", "i2v", "v2v"}; ``experts`` 1 or 2; ``image_encoder``: CLIP image
    conditioning (Wan 2.1 I2V); ``expand_timesteps``: per-token timesteps (2.2 TI2V)."""

    name: str
    family: str
    size: str
    tasks: tuple[str, ...]
    experts: int = 1
    image_encoder: bool = False
    expand_timesteps: bool = False
    in_channels: int = 16
    z_dim: int = 16

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def detect_variant(pipe: Any) -> WanVariant:
    """Wan 2.1 T2V (1.3B / 14B), 2.1 I2V (with image encoder), 2.2 A14B (two
    experts, T2V or I2V), 2.2 TI2V-5B (48-channel VAE, per-token timesteps),
    read from the configs of the loaded components."""
    tr = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    cfg = tr.config
    dim = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
    size = _KNOWN_SIZES.get((dim, int(cfg.num_layers)), f"custom(dim={dim}, layers={cfg.num_layers})")
    inc = int(cfg.in_channels)
    z_dim = int(getattr(pipe.vae.config, "z_dim", 16))
    two = getattr(pipe, "transformer_2", None) is not None and pipe.config.get("boundary_ratio") is not None
    expand = bool(pipe.config.get("expand_timesteps", False)) or z_dim == 48
    has_img = getattr(cfg, "image_dim", None) is not None
    if expand:
        name, tasks = f"wan2.2-ti2v-{size}", ("t2v", "v2v")
    elif two:
        i2v = inc == z_dim * 2 + 4
        name, tasks = f"wan2.2-{'i2v' if i2v else 't2v'}-A14B" if size == "14B" else \
            f"wan2.2-{'i2v' if i2v else 't2v'}-two-expert-{size}", (("i2v",) if i2v else ("t2v", "v2v"))
    elif inc == z_dim * 2 + 4:
        name, tasks = f"wan2.1-i2v-{size}", ("i2v",)
    else:
        name, tasks = f"wan2.1-t2v-{size}", ("t2v", "v2v")
    return WanVariant(name=name, family="wan2.2" if name.startswith("wan2.2") else "wan2.1", size=size, tasks=tasks,
                      experts=2 if two else 1, image_encoder=has_img, expand_timesteps=expand, in_channels=inc,
                      z_dim=z_dim)


def _null_components(folder: Path) -> dict:
    """Components saved as ``[null, null]`` in model_index.json -> None kwargs
    (diffusers would otherwise refuse the folder)."""
    idx = json.loads((folder / "model_index.json").read_text())
    return {k: None for k, v in idx.items() if isinstance(v, list) and v == [None, None]}


def load_wan_pipeline(model: str | None, dtype: Any, *, vae_dtype: Any = None, config: str | None = None):
    """A diffusers Wan pipeline (``WanPipeline`` or ``WanImageToVideoPipeline``,
    whatever the folder declares) on CPU. ``vae_dtype``: the VAE's dtype
    (default float32, as the Wan pipelines run it)."""
    import torch

    p = local_weights(model, "wan", kinds="a diffusers Wan folder or a .safetensors transformer",
                      folder_holds="transformer/ and vae/")
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    dtypes = {"default": dtype, "vae": vae_dtype or torch.float32, "image_encoder": torch.float32}
    with loader_errors("Wan", p, "check the folder is a complete diffusers Wan pipeline with safetensors; for a "
                                 "single file set backend_options.config"):
        if p.is_dir():
            return DiffusionPipeline.from_pretrained(str(p), dtype=dtypes, local_files_only=True,
                                                     use_safetensors=True, **_null_components(p))
        if not config:
            raise WeightsError(f"{p.name} is a single transformer file: the VAE, text encoder and configs "
                               "must come from a diffusers Wan folder",
                               fix="set backend_options.config to a local diffusers Wan folder of the same variant")
        cfg = Path(config)
        transformer = WanTransformer3DModel.from_single_file(str(p), config=str(cfg), subfolder="transformer",
                                                             dtype=dtype, local_files_only=True)
        return DiffusionPipeline.from_pretrained(str(cfg), dtype=dtypes, local_files_only=True,
                                                 use_safetensors=True, transformer=transformer,
                                                 **_null_components(cfg))


def weight_files(plan: ModelPlan) -> list[str]:
    """Files whose hashes the manifest records: the model (every safetensors of a
    folder), the config folder of a single file, the LoRA."""
    files: list[str] = []
    if plan.model:
        p = Path(plan.model)
        files += [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*.safetensors"))
    opts = plan.options
    if opts.config and plan.model and Path(plan.model).is_file():
        files += sorted(str(f) for f in Path(opts.config).rglob("*.safetensors"))
    if opts.lora:
        files.append(str(Path(opts.lora)))
    return files


__all__ = ["WanVariant", "detect_variant", "load_wan_pipeline", "weight_files"]
