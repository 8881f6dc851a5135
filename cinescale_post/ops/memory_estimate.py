"""Peak device-memory estimates and a planner that picks settings that fit.

Pure functions (no weights are loaded; torch is imported only to build
modules on the ``meta`` device for parameter counts and to ask CUDA for free
memory). Units: bytes everywhere unless a name says otherwise; sizes are
``(width, height)`` in pixels; ``tokens`` = sequence length N.

What is modelled (peak = resident weights + the largest transient working set
of the phase that is running, never the sum of all phases):

* weights: parameter count x dtype size (:func:`param_count_from_config` builds
  the model from its ``config.json`` on the meta device; :func:`param_count`
  counts a loaded module);
* attention: SDPA memory-efficient/flash kernels hold q, k, v, out:
  ``O(B*H*N*d)``; the math kernel also materialises the score matrix and its
  softmax: ``O(B*H*N*M)`` (:func:`attention_bytes`);
* UNet hidden states: the skip connections kept for the up path plus the
  working set of the widest block (:func:`unet_activation_bytes`);
* DiT hidden states: per-block working set at the stage's token count, divided
  by the context-parallel world size (:func:`dit_activation_bytes`);
* VAE encode/decode: the working set of one tile (the full frame when tiling
  is off) from the VAE's channel widths, plus the assembled output
  (:func:`vae_bytes`);
* classifier-free guidance doubles the denoiser batch when both passes run in
  one batch.

The weights are counted in ``ops.weight_size``, the working sets in
``ops.activation_size``; this module is the planner, and the one name plugins
use for all three (``cinescale_post.api.memory``), so it re-exports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cinescale_post.ops.activation_size import (BLOCK_FACTOR, FREEU_FFT_BYTES, GEGLU_FACTOR, KERNELS, RESNET_FACTOR,
                                                VAE_FACTOR, VAE_INPUT_FACTOR, attention_bytes, dit_activation_bytes,
                                                dit_tokens, unet_activation_bytes, vae_bytes, video_vae_bytes)
from cinescale_post.ops.weight_size import (DTYPE_BYTES, GiB, Component, component_from_folder, dtype_bytes, gib,
                                            largest_leaf_params, param_count, param_count_from_config,
                                            safetensors_params)

OFFLOADS = ("none", "model", "sequential")


# ------------------------------------------------------------------ free memory

def free_memory(device: Any = "cpu") -> tuple[int | None, str]:
    """(free bytes, where the number came from) for ``device``:
    ``torch.cuda.mem_get_info`` on CUDA; available RAM on CPU (psutil when
    installed, else /proc/meminfo MemAvailable). ``CINESCALE_FREE_MEMORY``
    (bytes, or e.g. "24GiB"/"80GB") overrides it, to plan for another machine."""
    env = os.environ.get("CINESCALE_FREE_MEMORY")
    if env:
        return parse_bytes(env), "CINESCALE_FREE_MEMORY"
    dev = str(device)
    if dev.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                idx = torch.device(dev).index
                free, _ = torch.cuda.mem_get_info(idx if idx is not None else torch.cuda.current_device())
                return int(free), "torch.cuda.mem_get_info"
        except Exception:  # noqa: BLE001
            pass
        return None, "unknown (no CUDA device here)"
    if dev.startswith("cpu"):
        try:
            import psutil

            return int(psutil.virtual_memory().available), "psutil.virtual_memory().available"
        except ImportError:
            pass
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "/proc/meminfo MemAvailable"
        except OSError:
            pass
    return None, f"unknown for device {dev}"


def parse_bytes(text: str) -> int:
    """"24GiB", "80GB", "512MiB", "1e9" -> bytes."""
    t = str(text).strip().replace(" ", "")
    units = {"TiB": 2 ** 40, "GiB": 2 ** 30, "MiB": 2 ** 20, "KiB": 2 ** 10,
             "TB": 10 ** 12, "GB": 10 ** 9, "MB": 10 ** 6, "KB": 10 ** 3, "B": 1}
    for u, m in units.items():
        if t.endswith(u):
            return int(float(t[: -len(u)]) * m)
    return int(float(t))


# ------------------------------------------------------------------ planner

@dataclass(frozen=True)
class StageDemand:
    """What one stage needs besides weights.

    ``denoise(window)``: denoiser activation bytes for a window of ``window``
    frames (images: 1); ``vae(tile, window)``: VAE working bytes for tile size
    ``tile`` px (None: untiled) and ``window`` frames; ``size``: (W, H)."""

    name: str
    size: tuple[int, int]
    denoise: Callable[[int], int]
    vae: Callable[[int | None, int], int]
    info: dict = field(default_factory=dict)


def _peak(components: dict[str, Component], denoisers: Sequence[str], vae_name: str, stage: StageDemand,
          tile: int | None, window: int, offload: str) -> dict:
    act = stage.denoise(window)
    vae_act = stage.vae(tile, window)
    den_w = sum(components[d].nbytes for d in denoisers if d in components)
    vae_w = components[vae_name].nbytes if vae_name in components else 0
    if offload == "none":
        resident = sum(c.nbytes for c in components.values())
        den_peak, vae_peak = resident + act, resident + vae_act
    elif offload == "model":  # one component on the device at a time (experts too)
        biggest = max((components[d].nbytes for d in denoisers if d in components), default=0)
        den_peak, vae_peak = biggest + act, vae_w + vae_act
    else:  # sequential: one layer at a time
        den_peak = max((components[d].largest_bytes for d in denoisers if d in components), default=0) + act
        vae_peak = (components[vae_name].largest_bytes if vae_name in components else 0) + vae_act
    del den_w
    return {"stage": stage.name, "size": list(stage.size), **stage.info,
            "denoiser_activations_gib": gib(act), "vae_working_gib": gib(vae_act),
            "peak_denoise_gib": gib(den_peak), "peak_vae_gib": gib(vae_peak),
            "peak_gib": gib(max(den_peak, vae_peak)), "_peak": max(den_peak, vae_peak)}


def candidates(tiles: Sequence[int | None], windows: Sequence[int], offloads: Sequence[str]):
    """Settings in order of preference: the full window without offload (every
    tile size, largest first), then model offload; then smaller windows; then
    sequential offload (slowest) from the largest window down."""
    tiles = list(tiles)
    wins = sorted(set(windows), reverse=True)
    fast = [o for o in offloads if o != "sequential"]
    for w in wins:
        for o in fast:
            for t in tiles:
                yield t, w, o
    if "sequential" in offloads:
        for w in wins:
            for t in tiles:
                yield t, w, "sequential"


def plan_memory(components: Sequence[Component], stages: Sequence[StageDemand], free_bytes: int | None, *,
                denoisers: Sequence[str] = ("unet",), vae: str = "vae", tiles: Sequence[int | None] = (None,),
                windows: Sequence[int] = (1,), offloads: Sequence[str] = ("none",), margin: float = 0.9,
                reserve_bytes: int = 512 * 2 ** 20) -> dict:
    """Choose (VAE tile, window frames, offload) so every stage fits.

    ``free_bytes``: free device memory (None: unknown, the first candidate is
    chosen and reported as unchecked); usable = ``free_bytes * margin -
    reserve_bytes`` (allocator fragmentation, CUDA context, small tensors).
    ``tiles`` in px, largest first (None = untiled, put first when allowed);
    ``windows`` in frames; ``offloads`` subset of ("none", "model",
    "sequential"). Returns ``{"fits", "choice", "usable_gib", "free_gib",
    "stages": per-stage estimates at the choice, "weights", "reasoning"}``;
    when nothing fits, ``fits`` is False, the choice is the smallest setting
    and ``reasoning`` says by how much it misses.
    """
    comps = {c.name: c for c in components}
    usable = None if free_bytes is None else max(0, int(free_bytes * margin - reserve_bytes))
    reasoning: list[str] = []
    tried = 0
    best = None
    smallest = None
    for tile, window, offload in candidates(tiles, windows, offloads):
        per = [_peak(comps, denoisers, vae, s, tile, window, offload) for s in stages]
        peak = max((p["_peak"] for p in per), default=0)
        setting = {"vae_tile": tile, "window": window, "offload": offload}
        desc = f"vae_tile={tile or 'off'} window={window} offload={offload}: peak {gib(peak)} GiB"
        if smallest is None or peak < smallest[0]:
            smallest = (peak, setting, per, desc)
        tried += 1
        if usable is None:
            reasoning.append(f"{desc}; free memory unknown, not checked")
            best = (peak, setting, per)
            break
        if peak <= usable:
            reasoning.append(f"{desc} <= {gib(usable)} GiB usable: chosen")
            best = (peak, setting, per)
            break
        reasoning.append(f"{desc} > {gib(usable)} GiB usable")
    fits = best is not None
    if best is None:
        peak, setting, per, desc = smallest
        best = (peak, setting, per)
        reasoning.append(f"nothing fits: the smallest setting ({desc}) needs {gib(peak)} GiB, "
                         f"{gib(peak - usable)} GiB more than the {gib(usable)} GiB usable "
                         f"(free {gib(free_bytes)} GiB x {margin} - {gib(reserve_bytes)} GiB reserve)")
    peak, setting, per = best
    for p in per:
        p.pop("_peak", None)
    if len(reasoning) > 12:  # keep the report readable: first tries, then the outcome
        reasoning = reasoning[:5] + [f"... {len(reasoning) - 7} more settings too large ..."] + reasoning[-2:]
    return {"fits": fits if usable is not None else None, "choice": setting, "peak_gib": gib(peak),
            "free_gib": None if free_bytes is None else gib(free_bytes),
            "usable_gib": None if usable is None else gib(usable),
            "weights": [c.to_dict() for c in components], "stages": per, "reasoning": reasoning,
            "settings_tried": tried}


__all__ = ["BLOCK_FACTOR", "Component", "DTYPE_BYTES", "FREEU_FFT_BYTES", "GEGLU_FACTOR", "GiB", "KERNELS", "OFFLOADS",
           "RESNET_FACTOR", "StageDemand", "VAE_FACTOR", "VAE_INPUT_FACTOR", "attention_bytes", "candidates",
           "component_from_folder", "dit_activation_bytes", "dit_tokens", "dtype_bytes", "free_memory",
           "gib", "largest_leaf_params", "param_count", "param_count_from_config", "parse_bytes",
           "plan_memory", "safetensors_params", "unet_activation_bytes", "vae_bytes", "video_vae_bytes"]
