"""SDXL memory estimate (--dry-run) and OOM back-off steps (issue 6, part 1)."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from helpers import cli_env, run_cli  # noqa: E402

from cinescale_post.testing import make_clip  # noqa: E402


def test_dry_run_prints_memory_estimate_per_stage_and_choice(tmp_path, tiny_model):
    clip = make_clip(tmp_path / "in.mov", frames=1)
    args = ["render", str(clip), "-o", str(tmp_path / "out.mov"), "--preset", "sdxl-uhd-refine", "--model",
            tiny_model, "--dry-run"]
    r = run_cli(args, timeout=120)
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["memory_estimate"]
    assert est["available"] and est["fits"] is True and est["choice"]["offload"] == "none"
    st = est["stages"][0]
    assert st["size"] == [3840, 2160] and st["latent"] == [480, 270] and st["unet_batch"] == 2  # CFG 7.5
    assert st["peak_gib"] >= st["denoiser_activations_gib"] > 0
    assert {w["name"] for w in est["weights"]} >= {"unet", "vae"}
    # planning for a smaller (hypothetical) device: nothing fits, with numbers
    r = run_cli(args, env=cli_env(CINESCALE_FREE_MEMORY="64MiB"), timeout=120)
    est = json.loads(r.stdout)["memory_estimate"]
    assert est["fits"] is False and est["free_gib"] == 0.062 and est["reasoning"][-1].startswith("nothing fits")


def test_reduce_memory_steps_through_tiles_and_ends_with_none(tiny_model):
    import torch
    from diffusers import StableDiffusionXLPipeline

    from cinescale_post.testing import adapter_driver
    from cinescale_sdxl.backend import SDXLAdapter, SDXLModel, SDXLOptions
    from cinescale_sdxl.tiny import build_tiny_sdxl

    model = SDXLModel(StableDiffusionXLPipeline(**build_tiny_sdxl(0, text_encoders=False)), dtype=torch.float32,
                      options=SDXLOptions.from_dict({"vae_tiling": False}))
    b = adapter_driver(SDXLAdapter()).use(model)
    steps = []
    while (s := b.reduce_memory()) is not None:
        steps.append(s)
        assert len(steps) < 10
    assert steps == ["VAE tiling on (64 px tiles)", "VAE tiles of 32 px", "VAE tiles of 16 px"]
    vae = model.pipe.vae
    assert vae.use_tiling and vae.tile_sample_min_size == 16 and vae.tile_latent_min_size == 2
    # on an accelerator the sequence goes on with model then sequential offload (plan only, no GPU here)
    model.device = torch.device("cuda")
    assert model.memory_steps()[-2:] == [("offload", "model"), ("offload", "sequential")]


def test_conform_dry_run_estimates_every_shot_on_a_card(tmp_path, tiny_model):
    """`cinescale conform --dry-run --gpu h100`: per shot the frames and the
    estimated seconds on the card for the shot's own frames."""
    from fractions import Fraction

    import opentimelineio as otio

    clip = make_clip(tmp_path / "A001.mov", frames=24, size=(64, 48), rate=Fraction(24), timecode="01:00:00:00")
    rt = otio.opentime.RationalTime
    ref = otio.schema.ExternalReference(target_url=str(clip),
                                        available_range=otio.opentime.TimeRange(rt(86400, 24), rt(24, 24)))
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for name, start, n in (("a", 2, 4), ("b", 14, 8)):
        track.append(otio.schema.Clip(name, media_reference=ref,
                                      source_range=otio.opentime.TimeRange(rt(86400 + start, 24), rt(n, 24))))
    tl = otio.schema.Timeline("cut")
    tl.tracks.append(track)
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(tl, str(cut))
    r = subprocess.run([sys.executable, "-m", "cinescale_post", "conform", str(cut), "-o", str(tmp_path / "o"),
                        "--preset", "sdxl-uhd-refine", "--model", tiny_model, "--dry-run", "--gpu", "h100"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    shots = json.loads(r.stdout)["shots"]
    assert [s["frame_count"] for s in shots] == [4, 8]
    for s in shots:
        assert s["estimate"]["device"].startswith("H100") and s["estimate"]["seconds"] > 0
    assert shots[1]["estimate"]["seconds"] > shots[0]["estimate"]["seconds"]  # twice the frames
