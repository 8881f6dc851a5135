"""The figures of issue 16: named cases, planner vs simulation, seconds per card.

A :class:`Case` is a shipped preset plus ``--set`` overrides (so each case is a
command a user can run: ``cinescale generate ... --preset P --set ...
--dry-run --simulate``). :func:`run_case` builds the real plan
(``plan.build``, with the built-in architecture written as a folder of
configs for ``--model``), simulates it (:func:`.driver.simulate_plan`) and
sets the memory planner's estimate next to it (:func:`compare`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cinescale_post.simulate.cards import CARDS, UTILISATION, GiB

SDXL_DIRECT = ('stages=[{size="output", steps=50, guidance=7.5}]', "backend_options.freeu=false")
WAN_BASE = ('stages=[{size=[832, 480], steps=50, guidance=5.0, shift=3.0, ntk=[1, 1, 1], attention_scale=false}]',)


@dataclass(frozen=True)
class Case:
    """One figure: ``preset`` with ``overrides`` at ``size`` (W, H)."""

    name: str
    arch: str
    preset: str
    size: tuple[int, int]
    mode: str = "generate"
    overrides: tuple[str, ...] = ()
    source: tuple[int, int] | None = None  # render: source frame size
    label: str = ""
    extra: dict = field(default_factory=dict)


CASES: dict[str, Case] = {c.name: c for c in (
    Case("sdxl1024-direct", "sdxl-base", "sdxl-2k-still", (1024, 1024), overrides=SDXL_DIRECT,
         label="SDXL 1024² (base stage = direct)"),
    Case("sdxl2048-ladder", "sdxl-base", "sdxl-2k-still", (2048, 2048), label="SDXL 2048² ladder (sdxl-2k-still)"),
    Case("sdxl2048-direct", "sdxl-base", "sdxl-2k-still", (2048, 2048), overrides=SDXL_DIRECT,
         label="SDXL 2048² direct"),
    Case("sdxl4096-ladder", "sdxl-base", "sdxl-4k-still", (4096, 4096), label="SDXL 4096² ladder (sdxl-4k-still)"),
    Case("sdxl4096-direct", "sdxl-base", "sdxl-4k-still", (4096, 4096), overrides=SDXL_DIRECT,
         label="SDXL 4096² direct"),
    Case("sdxl8192-ladder", "sdxl-base", "sdxl-8k-still", (8192, 8192), label="SDXL 8192² ladder (sdxl-8k-still)"),
    Case("sdxl8192-direct", "sdxl-base", "sdxl-8k-still", (8192, 8192), overrides=SDXL_DIRECT,
         label="SDXL 8192² direct"),
    Case("sdxl-uhd-refine", "sdxl-base", "sdxl-uhd-refine", (3840, 2160), mode="render", source=(1920, 1080),
         label="SDXL refine 1920x1080 -> UHD, one frame (sdxl-uhd-refine)"),
    Case("wan1.3b-480", "wan2.1-t2v-1.3b", "wan-2k-t2v", (832, 480), overrides=WAN_BASE,
         label="Wan 1.3B 480x832 x81 (base)"),
    Case("wan1.3b-1088", "wan2.1-t2v-1.3b", "wan-2k-t2v", (1920, 1088), label="Wan 1.3B 1088x1920 x81 (wan-2k-t2v)"),
    Case("wan1.3b-2176", "wan2.1-t2v-1.3b", "wan-4k-t2v", (3840, 2176),
         label="Wan 1.3B 2176x3840 x81 (wan-4k-t2v, 2 stages)"),
    Case("wan14b-1088", "wan2.1-t2v-14b", "wan-2k-t2v", (1920, 1088), label="Wan 14B 1088x1920 x81 (wan-2k-t2v)"),
    Case("wan14b-uhd-refine", "wan2.1-t2v-14b", "wan-uhd-refine", (3840, 2160), mode="render", source=(1920, 1080),
         label="Wan 14B refine 1920x1080 -> UHD, one 81-frame window (wan-uhd-refine)"),
)}

QUICK = ("sdxl4096-ladder", "sdxl4096-direct", "wan1.3b-1088")


def config_folder(arch: str, root: str | Path) -> Path:
    """The built-in architecture ``arch`` as a folder of configs under ``root`` (cached)."""
    from cinescale_post.simulate.configs import write_config_folder

    folder = Path(root) / arch
    if not (folder / "model_index.json").is_file():
        write_config_folder(arch, folder)
    return folder


def build_case_plan(case: Case, host: Any, workdir: str | Path, *, free_bytes: int | None = None):
    """The real plan of ``case`` (``plan.build``), planned for ``free_bytes``
    of device memory (``CINESCALE_FREE_MEMORY``; None: unknown)."""
    import os

    import cinescale_post.pipeline.plan as plan_mod

    workdir = Path(workdir)
    model = config_folder(case.arch, workdir / "models")
    env_old = os.environ.get("CINESCALE_FREE_MEMORY")
    if free_bytes is not None:
        os.environ["CINESCALE_FREE_MEMORY"] = str(int(free_bytes))
    try:
        if case.mode == "generate":
            out = workdir / f"{case.name}.####.exr" if case.arch.startswith("sdxl") else workdir / f"{case.name}.mov"
            return plan_mod.build(case.preset, host=host, output=str(out), overrides=case.overrides, model=str(model),
                                  device="cuda", prompt="a simulated prompt", mode="generate", size=case.size)
        from cinescale_post.testing import make_clip  # a benchmark may use the test kit

        clip = workdir / f"src-{case.source[0]}x{case.source[1]}.mov"
        if not clip.is_file():
            make_clip(clip, frames=2, size=case.source)
        return plan_mod.build(case.preset, host=host, input=str(clip), output=str(workdir / f"{case.name}.mov"),
                              overrides=case.overrides, model=str(model), device="cuda")
    finally:
        if free_bytes is not None:
            if env_old is None:
                os.environ.pop("CINESCALE_FREE_MEMORY", None)
            else:
                os.environ["CINESCALE_FREE_MEMORY"] = env_old


def resident(weights: dict[str, int], offload: str, using: str) -> int:
    """Weight bytes on the device while ``using`` runs (as the planner's model)."""
    if offload == "none":
        return sum(weights.values())
    if offload == "model":
        return weights.get(using, 0)
    return 0


def compare(plan, sim: dict) -> dict:
    """Planner's estimate (``plan.memory``) next to the simulated peaks, per
    stage and component; ratios planner / simulated."""
    mem = dict(getattr(plan, "memory", None) or {})
    choice = dict(mem.get("choice") or {})
    offload = choice.get("offload", "none")
    w = dict(sim["weights_bytes"])
    den_name = "unet" if "unet" in w else "transformer"
    rows = []
    by_size = {tuple(s["size"]): s for s in sim["stages"]}
    for st in mem.get("stages", []):
        s = by_size.get(tuple(st["size"]))
        if s is None:
            continue
        den_act = s.get("denoiser", {}).get("peak_activation_bytes", 0)
        vae_act = max(s.get("vae.encode", {}).get("peak_activation_bytes", 0),
                      s.get("vae.decode", {}).get("peak_activation_bytes", 0))
        sim_den = resident(w, offload, den_name) + den_act
        sim_vae = resident(w, offload, "vae") + vae_act if vae_act else 0
        rows.append({"stage": st["stage"], "size": st["size"],
                     "planner_denoiser_act_gib": st["denoiser_activations_gib"], "sim_denoiser_act_gib": den_act / GiB,
                     "planner_vae_gib": st["vae_working_gib"], "sim_vae_gib": vae_act / GiB,
                     "planner_peak_gib": st["peak_gib"], "sim_peak_gib": max(sim_den, sim_vae) / GiB})
    text_act = sim["components"].get("text_encoder", {}).get("peak_activation_bytes", 0)
    te = [k for k in w if k.startswith("text_encoder")]
    sim_text = resident(w, offload, te[0] if te else "") + text_act if offload != "model" else \
        max((w.get(k, 0) for k in te), default=0) + text_act
    sim_peak = max([r["sim_peak_gib"] * GiB for r in rows] + [sim_text])
    plan_peak = float(mem.get("peak_gib") or 0) * GiB
    planner_weights = sum(c.get("weights_gib", 0) for c in mem.get("weights", [])) * GiB
    den_rows = [r for r in rows if r["sim_denoiser_act_gib"] > 0]
    vae_rows = [r for r in rows if r["sim_vae_gib"] > 0]
    return {"choice": choice, "fits": mem.get("fits"), "usable_gib": mem.get("usable_gib"),
            "planner_peak_gib": plan_peak / GiB, "sim_peak_gib": sim_peak / GiB,
            "ratio_peak": (plan_peak / sim_peak) if sim_peak else None,
            "planner_weights_gib": planner_weights / GiB, "sim_weights_gib": sum(w.values()) / GiB,
            "ratio_denoiser_act": _ratio(max((r["planner_denoiser_act_gib"] for r in den_rows), default=0),
                                         max((r["sim_denoiser_act_gib"] for r in den_rows), default=0)),
            "ratio_vae_act": _ratio(max((r["planner_vae_gib"] for r in vae_rows), default=0),
                                    max((r["sim_vae_gib"] for r in vae_rows), default=0)),
            "text_encoder_act_gib": text_act / GiB, "stages": rows}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def seconds(flops: float, utilisation: float = UTILISATION) -> dict[str, float]:
    """Estimated seconds per named card at ``utilisation`` of the dense peak."""
    return {k: c.seconds(flops, utilisation) for k, c in CARDS.items()}


def run_case(case: Case, host: Any = None, workdir: str | Path | None = None, *,
             free_bytes: int | None = None) -> dict:
    """Plan, simulate and compare ``case``; JSON-ready."""
    from cinescale_post.pipeline.host import Host
    from cinescale_post.simulate.simulation import simulate_plan

    host = host or Host()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cinescale-sim-")
        workdir = tmp.name
    try:
        plan = build_case_plan(case, host, workdir, free_bytes=free_bytes)
        sim = simulate_plan(plan, host, arch=case.arch, source_size=case.source)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"case": case.name, "label": case.label, "preset": case.preset, "overrides": list(case.overrides),
            "size": list(case.size), "simulation": sim, "planner": compare(plan, sim),
            "seconds": seconds(sim["flops"]), "utilisation": UTILISATION}


__all__ = ["CASES", "Case", "QUICK", "build_case_plan", "compare", "config_folder", "resident", "run_case",
           "seconds"]
