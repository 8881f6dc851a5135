"""--dry-run --gpu / --json (issue 16): the planner's per-stage estimate and
fit for a named card, from real-size configs (no weights, no simulation)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import run_cli  # noqa: E402

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def sdxl_configs(tmp_path_factory):
    from cinescale_post.simulate.configs import write_config_folder

    return write_config_folder("sdxl-base", tmp_path_factory.mktemp("cfg") / "sdxl")


def _args(folder, out, *extra):
    return ["generate", "--prompt", "a lighthouse", "--preset", "sdxl-8k-still", "--model", str(folder),
            "-o", str(out), "--dry-run", *extra]


@pytest.mark.slow  # five CLI runs, each counting the real-size parameters on meta (~8 s)
def test_dry_run_json_says_per_stage_peaks_and_whether_a_card_fits(tmp_path, sdxl_configs):
    out = tmp_path / "still.####.exr"
    small = run_cli(_args(sdxl_configs, out, "--gpu", "4090", "--json"))
    assert small.returncode == 0, small.stderr
    est = json.loads(small.stdout)["estimate"]
    assert est["device"].startswith("RTX 4090") and est["fits"] is False
    assert [s["size"] for s in est["stages"]] == [[1024, 1024], [2048, 2048], [4096, 4096], [8192, 8192]]
    peaks = [s["peak_gib"] for s in est["stages"]]
    assert peaks == sorted(peaks) and peaks[-1] > 23.6
    big = json.loads(run_cli(_args(sdxl_configs, out, "--gpu", "h200", "--json")).stdout)["estimate"]
    assert big["fits"] is True and big["choice"]["offload"] == "none"
    # without --json: the plan JSON on stdout (unchanged), the estimate for people on stderr
    r = run_cli(_args(sdxl_configs, out, "--gpu", "48"))
    assert r.returncode == 0 and json.loads(r.stdout)["backend"] == "sdxl"
    assert "stage 3 8192x8192: peak" in r.stderr and "48 GiB device" in r.stderr
    assert not list(tmp_path.glob("still.*"))


def test_gpu_needs_dry_run_and_a_known_card(tmp_path, sdxl_configs):
    r = run_cli(["generate", "--prompt", "x", "--preset", "sdxl-8k-still", "--model", str(sdxl_configs),
                 "-o", str(tmp_path / "s.####.exr"), "--gpu", "h100"])
    assert r.returncode == 2 and "--dry-run" in r.stderr
    r = run_cli(_args(sdxl_configs, tmp_path / "s.####.exr", "--gpu", "tpu9"))
    assert r.returncode == 2 and "h100" in r.stderr


def test_an_architecture_name_answers_will_it_fit_before_the_download(tmp_path):
    """Issue 26 item 6: `--model wan2.1-t2v-1.3b` plans from the published
    configs (no weights on disk) for --dry-run; a render is refused with the fix."""
    out = tmp_path / "owl.mov"
    args = ["generate", "--prompt", "an owl", "--preset", "wan-2k-t2v", "--model", "wan2.1-t2v-1.3b", "-o", str(out)]
    r = run_cli([*args, "--dry-run", "--gpu", "40", "--json"])
    assert r.returncode == 0, r.stderr
    assert "published configs of wan2.1-t2v-1.3b" in r.stderr
    est = json.loads(r.stdout)["estimate"]
    assert est["available"] and est["fits"] is True and est["peak_gib"] > 10
    refused = run_cli(args)
    assert refused.returncode == 2 and "--dry-run" in refused.stderr and not out.exists()
