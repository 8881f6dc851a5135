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

Tasks that start at once (a farm queue releasing every chunk together) all
find no manifest yet: the first to publish ``<output>.cinescale/
memory_frozen.json`` wins (:func:`claim`: a hard link of a complete temporary
file, which fails when the name exists -- atomic on local disks and NFS), and
every other task reads the winner's record back and adopts it, so the tasks
never write two different choices.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from cinescale_post.contracts.errors import OutOfMemoryError, OutputError

OFFLOAD_ORDER = ("none", "model", "sequential")  # less device memory, same pixels
CLAIM_NAME = "memory_frozen.json"
CLAIM_READ_S = 5.0  # how long a loser waits for the winner's file to be complete (O_EXCL fallback only)


def claim(plan, *, overwrite: bool = False) -> tuple[Any, list[str]]:
    """``plan`` with the render's frozen memory plan: the manifest's (a
    later task or a resume), else the one first published by a task of this
    render starting now, else this plan's own, published for the others.
    ``overwrite`` (a new render of the output) publishes this plan's choice
    over an older one."""
    from cinescale_post.orchestrator.manifest import Manifest, work_dir

    if not overwrite:
        earlier = Manifest(plan.output.path, read_only=True).read() or {}
        if earlier.get("memory_frozen"):
            return adopt(plan, earlier["memory_frozen"])
    mine = record(plan)
    if mine is None:
        return plan, []
    path = work_dir(plan.output.path) / CLAIM_NAME
    if publish_once(path, mine, replace=overwrite):
        return plan, []
    return adopt(plan, read_claim(path))


def publish_once(path: Path, data: dict, *, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` unless it exists; True when this call
    wrote it. The file appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails with FileExistsError when another task won
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, written in place
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(data, indent=2))
            return True
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}",
                          fix="check free space and permissions of the output folder") from exc
    finally:
        tmp.unlink(missing_ok=True)


def read_claim(path: Path) -> dict:
    """The winner's record (waits briefly for one written in place)."""
    deadline = time.monotonic() + CLAIM_READ_S
    while True:
        try:
            got = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(got, dict):
                return got
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise OutputError(f"{path} (the render's frozen memory plan) is unreadable",
                              fix=f"delete {path} and start the render's tasks again")
        time.sleep(0.02)


def record(plan) -> dict | None:
    """What the first task writes into the manifest (None: no memory plan)."""
    mem = plan.memory or {}
    if not mem.get("available") or not mem.get("choice"):
        return None
    if mem.get("frozen_record"):  # adopted: the first task's record, its numbers included
        return dict(mem["frozen_record"])
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
    memory = {**mem, "choice": choice, "frozen": True, "frozen_record": dict(frozen)}
    kept = tuple(w for w in plan.warnings if not w.startswith("memory: window reduced")
                 and not w.startswith("output.chunk "))
    return dataclasses.replace(plan, window=window, output=output, memory=memory, warnings=kept), notes


def _describe(choice: dict) -> str:
    tile = choice.get("vae_tile")
    return (f"window {choice.get('window')}, VAE tile {tile or 'off'}"
            f"{'' if tile in (None, 0) else ' px'}, offload {choice.get('offload', 'none')}")
