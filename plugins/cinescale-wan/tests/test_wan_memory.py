"""Wan memory estimate and OOM back-off steps (issue 6, part 1)."""

from types import SimpleNamespace

from wan_helpers import TINY_REFINE, driver, make_plan


def test_estimate_memory_windows_and_choice(tmp_path, monkeypatch):
    from cinescale_wan.tiny import save_tiny_wan

    model = str(save_tiny_wan(tmp_path / "w"))
    plan = make_plan(model, stages=TINY_REFINE, mode="render", size=(1920, 1088))
    plan.window = SimpleNamespace(size=81)
    plan.device = "cuda"
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "100GiB")
    big = driver().estimate_memory(plan)
    assert big["fits"] and big["choice"] == {"vae_tile": 240, "window": 81, "offload": "none"}
    assert big["stages"][0]["tokens_full_window"] == 21 * (1088 // 16) * (1920 // 16)
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "2GiB")
    small = driver().estimate_memory(plan)
    assert small["choice"]["window"] < 81 and small["peak_gib"] < big["peak_gib"]
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "1MiB")
    none = driver().estimate_memory(plan)
    assert none["fits"] is False and none["reasoning"][-1].startswith("nothing fits")


def test_reduce_memory_sequence_ends_with_none():
    import torch

    from cinescale_wan.tiny import tiny_wan_pipeline
    from cinescale_wan.backend import WanModel
    from cinescale_wan.options import WanOptions

    model = WanModel(tiny_wan_pipeline(0, text_encoder=False), dtype=torch.float32,
                     options=WanOptions(vae_tiling=False))
    b = driver().use(model)  # the driver's back-off walks the steps the model declares
    steps = []
    while (s := b.reduce_memory()) is not None:
        steps.append(s)
        assert len(steps) < 10
    assert steps == ["VAE tiling on (240x416 px tiles)", "VAE tiles of 180x312 px", "VAE tiles of 120x208 px"]
    # the last step: half the preset's 240x416 tile, stride 3/4 of it (was 128/96 before the reference tiles)
    assert model.pipe.vae.tile_sample_min_height == 120 and model.pipe.vae.tile_sample_stride_height == 90
