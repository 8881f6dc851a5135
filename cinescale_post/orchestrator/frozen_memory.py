"""The memory plan of a render, frozen by its first task.

The memory planner (``plan._plan_memory``) picks the temporal window, the VAE
tile and the offload setting from the free memory of the card it runs on.
Window and tile change pixels, so every task of one render must use the
same ones, whatever card it lands on: the first task writes its choice into
the manifest (``memory_frozen``) and every later task and resume adopts it
(:func:`adopt`), so the plan digest -- and the picture -- stay the same.

A later task whose card cannot hold the frozen setting may only take a path
that gives identical pixels (model offload instead of none); otherwise it
stops with exit 5 and the numbers, never silently rendering a different
picture.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import OutOfMemoryError

OFFLOAD_ORDER = ("none", "model", "sequential")  # less device memory, same pixels


def record(plan) -> dict | None:
    """What the first task writes into the manifest (None: no memory plan)."""
    mem = plan.memory or {}
    if not mem.get("available") or not mem.get("choice"):
        return None
    return {"choice": dict(mem["choice"]), "window": [plan.window.size, plan.window.overlap],
            "chunk": plan.output.chunk, "requested": mem.get("requested"), "peak_gib": mem.get("peak_gib"),
            "free_gib": mem.get("free_gib"), "usable_gib": mem.get("usable_gib"), "device": mem.get("device")}


def _tile_rank(tile: Any) -> float:
    return float("inf") if tile in (None, 0) else float(tile)  # untiled needs the most memory


def _offload_rank(offload: Any) -> int:
    return OFFLOAD_ORDER.index(offload) if offload in OFFLOAD_ORDER else 0


def adopt(plan, frozen: dict | None) -> tuple[Any, list[str]]:
    """``plan`` with the render's frozen memory choice, and notes for the
    progress log. Unchanged when there is nothing frozen, no memory plan
    here, or the preset asks for something else (window/chunk before the
    planner): the digest check then decides. Raises OutOfMemoryError (exit
    5) when this card cannot hold the frozen setting."""
    mem = dict(plan.memory or {})
    if not frozen or not mem.get("available") or not frozen.get("choice"):
        return plan, []
    if frozen.get("requested") != mem.get("requested"):
        return plan, []
    here, fro = dict(mem.get("choice") or {}), dict(frozen["choice"])
    notes: list[str] = []
    usable, peak = mem.get("usable_gib"), frozen.get("peak_gib")
    choice = dict(fro)
    if usable is None or peak is None:
        if here != fro:
            notes.append(f"memory: using the render's frozen plan ({_describe(fro)}); free memory here is "
                         "unknown, so it is not checked")
    elif peak <= usable:
        if here != fro:
            notes.append(f"memory: using the render's frozen plan ({_describe(fro)}, peak {peak} GiB, fits the "
                         f"{usable} GiB usable here) instead of this card's own ({_describe(here)})")
    elif (here.get("window") == fro.get("window") and _tile_rank(here.get("vae_tile")) >= _tile_rank(fro.get("vae_tile"))
          and _offload_rank(here.get("offload")) > _offload_rank(fro.get("offload"))):
        choice["offload"] = here["offload"]  # moving weights on and off the device changes no pixel
        notes.append(f"memory: the render's frozen plan ({_describe(fro)}) needs {peak} GiB, {usable} GiB usable "
                     f"here: adding {here['offload']} offload (same pixels, slower)")
    else:
        raise OutOfMemoryError(
            f"this card cannot hold the render's frozen memory plan ({_describe(fro)}, chosen by its first task "
            f"with {frozen.get('free_gib')} GiB free on {frozen.get('device')}): it needs {peak} GiB, "
            f"{usable} GiB usable here ({mem.get('free_gib')} GiB free); this card alone would choose "
            f"{_describe(here)}, which changes the picture",
            fix="run this task on a card with more free memory (or free it), or re-render the whole shot for "
                "this card with --overwrite")
    window = dataclasses.replace(plan.window, size=int(frozen["window"][0]), overlap=int(frozen["window"][1]))
    output = dataclasses.replace(plan.output, chunk=int(frozen["chunk"]))
    memory = {**mem, "choice": choice, "frozen": True}
    kept = tuple(w for w in plan.warnings if not w.startswith("memory: window reduced")
                 and not w.startswith("output.chunk "))
    return dataclasses.replace(plan, window=window, output=output, memory=memory, warnings=kept), notes


def _describe(choice: dict) -> str:
    tile = choice.get("vae_tile")
    return (f"window {choice.get('window')}, VAE tile {tile or 'off'}"
            f"{'' if tile in (None, 0) else ' px'}, offload {choice.get('offload', 'none')}")
