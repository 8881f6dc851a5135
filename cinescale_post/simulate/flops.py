"""The planner's FLOP estimate: denoiser FLOPs per stage from the memory plan
alone (no torch, no simulation), so plain ``--dry-run`` can say how long a
render takes on a card (issue 16 item 5).

Denoiser calls per stage: its steps, less the skipped ones when the stage
starts from an earlier picture (``restart_step``, else the ``restart``
fraction; a generate's first stage runs every step), times the windows the
render needs. One call is ``passes`` = 2 model evaluations with classifier-free
guidance (guidance > 1), else 1. Per evaluation:

* DiT (Wan): ``2 * params * T + 4 * layers * dim * T**2`` for ``T`` tokens
  (latent frames x H/16 x W/16): every weight used once per token, and the
  QK^T and AV products of full self-attention. Params come from the planner's
  weight sizes, layers and dim from the model's ``transformer/config.json``.
* UNet (SDXL): ``A * P + B * P**2 (+ F * P**1.25 with scale fusion)`` with
  ``P`` the latent area in units of 128x128 (1024x1024 pixels). A, B and F are
  fitted to the real-size simulation (BENCHMARKS.md, "Real-size simulation":
  13.52 TFLOP per CFG step at 1024x1024; direct 2048/4096/8192; the ladders'
  extra scale-fusion attention), scaled by the UNet's parameters relative to
  SDXL's for other UNets.

VAE encode/decode and text encoders are left out (under 5 % of every
simulated case). Against the simulated table the estimate is within
-5..+9 % (see tests/simulate/test_dry_run_time.py); ``--simulate`` counts the
exact plan instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

GiB = 2 ** 30
SDXL_UNET_PARAMS = 2.5675e9
UNET_A = 5.93e12  # FLOPs per evaluation per unit area: convolutions and linear layers
UNET_B = 0.83e12  # ... per unit area squared: global self-attention at 64x64 / 32x32 latent levels
UNET_FUSION = 2.75e12  # ... per unit area ** 1.25: FreeScale's local-window attention next to the global one
_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float8_e4m3fn": 1}


def _stage(plan: Any, index: int) -> dict:
    return dict(plan.stages[index]) if index < len(plan.stages) else {}


def _calls(plan: Any, index: int) -> int:
    st = _stage(plan, index)
    steps = int(st.get("steps") or 0)
    continues = plan.mode != "generate" or index > 0  # starts from an earlier picture
    rs = st.get("restart_step")
    if continues and rs is not None:
        return max(steps - int(rs), 0)
    restart = float(st.get("restart") or 0)
    return int(round(steps * (1 - restart))) if continues and restart else steps


def _passes(plan: Any, index: int) -> int:
    return 2 if float(_stage(plan, index).get("guidance") or 1.0) > 1.0 else 1


def _windows(plan: Any, window: int) -> int:
    """Windows (or frames, for frame-by-frame models) the whole render needs."""
    n = max(int(getattr(plan, "frame_count", 0) or len(getattr(plan, "frames", ()) or ()) or 1), 1)
    if plan.mode == "generate":
        return 1
    w, o = max(window, 1), int(getattr(plan.window, "overlap", 0) or 0) if window > 1 else 0
    return 1 if n <= w else math.ceil((n - o) / max(w - o, 1))


def _params(mem: dict, name: str) -> float | None:
    for w in mem.get("weights") or ():
        if w.get("name") == name and w.get("weights_gib"):
            return float(w["weights_gib"]) * GiB / _BYTES.get(str(mem.get("dtype")), 2)
    return None


def _dit_config(plan: Any) -> dict | None:
    try:
        return json.loads((Path(str(plan.model)) / "transformer" / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return None


def stage_flops(plan: Any) -> tuple[list[dict], str | None]:
    """Per memory-plan stage: ``{"flops", "denoiser_calls", "windows"}`` for
    the whole render, and None; or ([], why) when the plan says too little."""
    mem = dict(getattr(plan, "memory", None) or {})
    stages = mem.get("stages") or []
    if not mem.get("available") or not stages:
        return [], "no memory plan"
    window = int((mem.get("choice") or {}).get("window") or 1)
    windows = _windows(plan, window)
    out = []
    if "tokens_full_window" in stages[0]:
        cfg = _dit_config(plan)
        params = _params(mem, "transformer")
        if not cfg or params is None or not cfg.get("num_layers"):
            return [], "the transformer's config.json (layers, heads) is not readable"
        dim = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
        patch = cfg.get("patch_size") or [1, 2, 2]
        lat_frames = (window - 1) // 4 + 1
        for i, st in enumerate(stages):
            w, h = st["size"]
            tokens = lat_frames * (h // (8 * patch[1])) * (w // (8 * patch[2]))
            per = 2 * params * tokens + 4 * int(cfg["num_layers"]) * dim * tokens ** 2
            calls = _calls(plan, i)
            out.append({"flops": per * _passes(plan, i) * calls * windows, "denoiser_calls": calls * windows,
                        "windows": windows, "tokens": tokens})
        return out, None
    if "latent" in stages[0]:
        params = _params(mem, "unet") or SDXL_UNET_PARAMS
        k = params / SDXL_UNET_PARAMS
        for i, st in enumerate(stages):
            lw, lh = st["latent"]
            area = lw * lh / 128 ** 2
            per = UNET_A * area + UNET_B * area ** 2
            if _stage(plan, i).get("fusion") == "scale-fusion" and area > 1:
                per += UNET_FUSION * area ** 1.25
            calls = _calls(plan, i)
            out.append({"flops": k * per * _passes(plan, i) * calls * windows, "denoiser_calls": calls * windows,
                        "windows": windows})
        return out, None
    return [], "this backend's memory plan names no tokens or latent size"


__all__ = ["stage_flops"]
