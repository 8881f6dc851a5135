"""What ``--dry-run`` tells a user before a render (no torch unless ``--simulate``).

:func:`estimate` turns a plan's memory estimate (``plan.memory``, made by the
planner in ``plan.build``) and, when given, a simulation of the same plan
(:func:`cinescale_post.simulate.simulation.simulate_plan`) into per-stage rows:
estimated peak memory, the VAE tile / window / offload choice, whether it
fits the selected device (``--gpu`` card or the plan's device), and seconds
on that card at :data:`.cards.UTILISATION` from the FLOPs: the planner's
estimate (:mod:`.flops`, fast) or, with ``--simulate``, the simulation's.
:func:`format_estimate` prints it for people; ``--json`` prints the dict.
"""

from __future__ import annotations

from typing import Any

from cinescale_post.simulate.cards import UTILISATION, Card, device_card
from cinescale_post.simulate.flops import stage_flops

GiB = 2 ** 30


def estimate(plan: Any, card: Card | None = None, sim: dict | None = None) -> dict:
    """Per-stage memory/time rows for ``plan`` (see module doc). JSON-ready."""
    mem = dict(getattr(plan, "memory", None) or {})
    out: dict[str, Any] = {"backend": plan.backend, "mode": plan.mode,
                           "output": [plan.output.width, plan.output.height],
                           "device": card.name if card is not None else str(plan.device),
                           "utilisation": UTILISATION, "available": bool(mem.get("available"))}
    if not mem.get("available"):
        out["reason"] = mem.get("reason") or f"backend {plan.backend!r} gives no memory estimate"
        return out
    out.update(choice=mem.get("choice"), fits=mem.get("fits"), free_gib=mem.get("free_gib"),
               usable_gib=mem.get("usable_gib"), peak_gib=mem.get("peak_gib"), weights=mem.get("weights"),
               reasoning=(mem.get("reasoning") or [])[-1:])
    by_size = {tuple(s["size"]): s for s in (sim or {}).get("stages", [])}
    if card is None:
        card = device_card(plan.device)  # the selected device, where it is a known card
        if card is not None:
            out["device"] = f"{card.name} ({plan.device})"
    planned, why = ([], None) if sim is not None else stage_flops(plan)
    if sim is None:
        out["flops_source"] = "planner" if planned else f"none ({why})"
    rows = []
    total_s = 0.0
    for i, st in enumerate(mem.get("stages", [])):
        row = {"stage": st["stage"], "size": st["size"], "peak_gib": st["peak_gib"],
               "denoise_gib": st.get("peak_denoise_gib"), "vae_gib": st.get("peak_vae_gib")}
        s = by_size.get(tuple(st["size"]))
        if i < len(planned):
            row.update(flops=planned[i]["flops"], denoiser_calls=planned[i]["denoiser_calls"])
            if card is not None and card.peak_tflops > 0:
                row["seconds"] = card.seconds(row["flops"])
                total_s += row["seconds"]
        if s is not None:
            flops = sum(s.get(k, {}).get("flops", 0) for k in ("denoiser", "vae.encode", "vae.decode"))
            row["flops"] = flops
            row["denoiser_calls"] = s.get("denoiser_calls")
            row["simulated_activations_gib"] = round(max(s.get(k, {}).get("peak_activation_bytes", 0) for k in
                                                         ("denoiser", "vae.encode", "vae.decode")) / GiB, 3)
            if card is not None and card.peak_tflops > 0:
                row["seconds"] = card.seconds(flops)
                total_s += row["seconds"]
        rows.append(row)
    out["stages"] = rows
    if planned and card is not None and card.peak_tflops > 0:
        out["seconds"] = total_s
    if sim is not None:
        out["simulated"] = {"flops": sim["flops"], "peak_activation_gib": sim["peak_activation_bytes"] / GiB,
                            "notes": sim.get("notes", [])}
        if card is not None and card.peak_tflops > 0:
            out["seconds"] = card.seconds(sim["flops"])
    return out


def _hms(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def format_estimate(est: dict) -> str:
    """Human-readable lines of :func:`estimate`."""
    head = f"estimate for {est['backend']} {est['mode']} {est['output'][0]}x{est['output'][1]} on {est['device']}"
    if not est.get("available"):
        return f"{head}: no memory estimate ({est.get('reason')})"
    ch = est.get("choice") or {}
    fits = {True: "fits", False: "does NOT fit", None: "fit unknown (free memory unknown: use --gpu)"}[est.get("fits")]
    lines = [head, f"  choice: VAE tile {ch.get('vae_tile') or 'off'}, window {ch.get('window')} frames, "
                   f"offload {ch.get('offload')}; peak {est.get('peak_gib')} GiB of {est.get('usable_gib')} GiB "
                   f"usable: {fits}"]
    for r in est.get("stages", []):
        t = f", {_hms(r['seconds'])}" if "seconds" in r else ""
        calls = f", {r['denoiser_calls']} denoiser calls" if r.get("denoiser_calls") else ""
        if r.get("flops"):
            calls += f", {r['flops'] / 1e15:.1f} PFLOP"
        if "simulated_activations_gib" in r:
            calls += f", simulated activations {r['simulated_activations_gib']} GiB"
        lines.append(f"  {r['stage']} {r['size'][0]}x{r['size'][1]}: peak {r['peak_gib']} GiB "
                     f"(denoise {r['denoise_gib']}, VAE {r['vae_gib']}){calls}{t}")
    source = "simulated" if est.get("simulated") else "planner's"
    if "seconds" in est:
        lines.append(f"  total: {_hms(est['seconds'])} from the {source} FLOPs at {est['utilisation']:.0%} of "
                     "the card's dense 16-bit peak (an assumed utilisation, not a measurement)")
    elif any("flops" in r for r in est.get("stages", [])):
        lines.append("  time: unknown for this device (name a card: --gpu h100|h200|a100|a800|4090)")
    elif est.get("simulated") is None:
        lines.append(f"  time: no FLOP estimate ({est.get('flops_source')}); --simulate counts them")
    if est.get("simulated"):
        lines.append(f"  simulated: {est['simulated']['flops'] / 1e15:.1f} PFLOP; "
                     + "; ".join(est["simulated"]["notes"][:1]))
    for r in est.get("reasoning") or []:
        lines.append(f"  planner: {r}")
    return "\n".join(lines)


__all__ = ["estimate", "format_estimate"]
