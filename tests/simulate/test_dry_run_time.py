"""Plain --dry-run says the time per stage on the card (issue 16 item 5):
the planner's FLOP estimate (no simulation), held to the real-size
simulation's FLOPs (BENCHMARKS.md, "Real-size simulation")."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import run_cli  # noqa: E402

from cinescale_post.simulate.cards import CARDS, UTILISATION  # noqa: E402
from cinescale_post.simulate.flops import stage_flops  # noqa: E402
from cinescale_post.simulate.report import estimate, format_estimate  # noqa: E402


def _wan_plan(folder, *, mode="generate", frames=1, stages=None, window=81, size=(1920, 1088), gib=26.615):
    """What plan.build gives for Wan (the planner's fields only): no diffusers needed."""
    stages = stages or [{"steps": 50, "guidance": 5.0}]
    mem = {"available": True, "dtype": "bfloat16", "choice": {"window": window, "vae_tile": 240, "offload": "none"},
           "weights": [{"name": "transformer", "weights_gib": gib}], "fits": True, "peak_gib": 58.7,
           "usable_gib": 70.78, "stages": [{"stage": f"stage {i}", "size": list(size), "tokens_full_window": 1,
                                            "peak_gib": 58.7} for i in range(len(stages))]}
    return SimpleNamespace(memory=mem, stages=stages, mode=mode, model=str(folder), frame_count=frames,
                           window=SimpleNamespace(size=window, overlap=8), backend="wan", device="cuda",
                           output=SimpleNamespace(width=size[0], height=size[1]))


def test_wan_14b_flops_match_the_simulation_and_windows_multiply(tmp_path):
    from cinescale_post.simulate.configs import write_config_folder

    folder = write_config_folder("wan2.1-t2v-14b", tmp_path / "wan14")
    rows, why = stage_flops(_wan_plan(folder))
    assert why is None and rows[0]["denoiser_calls"] == 50
    assert 0.95 <= rows[0]["flops"] / 2825.1e15 <= 1.05  # simulated: 2825.1 PFLOP
    # a 240-frame refine in 81-frame windows overlapping by 8 (4 windows), re-noised at step 15 of 50
    refine = _wan_plan(folder, mode="render", frames=240, stages=[{"steps": 50, "restart_step": 15, "guidance": 5}])
    (row,), _ = stage_flops(refine)
    assert row["windows"] == 4 and row["denoiser_calls"] == 4 * 35
    est = estimate(refine, CARDS["h100"])
    assert est["flops_source"] == "planner" and est["seconds"] == pytest.approx(
        row["flops"] / (989e12 * UTILISATION))
    text = format_estimate(est)
    assert "140 denoiser calls" in text and f"{UTILISATION:.0%} of the card's dense 16-bit peak" in text
    # no card named and no GPU here: the FLOPs, and how to get seconds
    assert "--gpu h100" in format_estimate(estimate(refine, None))


def test_plain_dry_run_prints_time_per_stage_for_the_card(tmp_path):
    pytest.importorskip("diffusers")
    from cinescale_post.simulate.configs import write_config_folder

    folder = write_config_folder("sdxl-base", tmp_path / "sdxl")
    args = ["generate", "--prompt", "a lighthouse", "--preset", "sdxl-4k-still", "--model", str(folder),
            "-o", str(tmp_path / "s.png"), "--dry-run", "--gpu", "a100"]
    r = run_cli([*args, "--json"])
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["estimate"]
    assert [s["denoiser_calls"] for s in est["stages"]] == [50, 35, 35]  # ladder: restart 0.3 above the base
    flops = sum(s["flops"] for s in est["stages"])
    assert 0.95 <= flops / 30.9e15 <= 1.10  # simulated SDXL 4096² ladder: 30.9 PFLOP
    assert all(s["seconds"] > 0 for s in est["stages"]) and est["seconds"] == pytest.approx(
        flops / (312e12 * UTILISATION))
    r = run_cli(args)
    assert r.returncode == 0 and "stage 2 4096x4096: peak" in r.stderr and " min" in r.stderr
    assert "40% of the card's dense 16-bit peak (an assumed utilisation" in r.stderr
