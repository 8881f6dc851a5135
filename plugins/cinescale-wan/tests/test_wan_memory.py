"""Wan memory estimate and OOM back-off steps (issue 6, part 1)."""

from types import SimpleNamespace

from wan_helpers import TINY_REFINE, make_plan


def test_estimate_memory_windows_and_choice(tmp_path, monkeypatch):
    from cinescale_post.testing_wan import save_tiny_wan
    from cinescale_wan.backend import WanBackend

    model = str(save_tiny_wan(tmp_path / "w"))
    plan = make_plan(model, stages=TINY_REFINE, mode="render", size=(1920, 1088))
    plan.window = SimpleNamespace(size=81)
    plan.device = "cuda"
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "100GiB")
    big = WanBackend().estimate_memory(plan)
    assert big["fits"] and big["choice"] == {"vae_tile": 240, "window": 81, "offload": "none"}
    assert big["stages"][0]["tokens_full_window"] == 21 * (1088 // 16) * (1920 // 16)
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "2GiB")
    small = WanBackend().estimate_memory(plan)
    assert small["choice"]["window"] < 81 and small["peak_gib"] < big["peak_gib"]
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "1MiB")
    none = WanBackend().estimate_memory(plan)
    assert none["fits"] is False and none["reasoning"][-1].startswith("nothing fits")


def test_reduce_memory_sequence_ends_with_none():
    import torch

    from cinescale_post.testing_wan import tiny_wan_pipeline
    from cinescale_wan.backend import WanBackend
    from cinescale_wan.options import WanOptions

    b = WanBackend().attach(tiny_wan_pipeline(0, text_encoder=False), dtype=torch.float32,
                            options=WanOptions(vae_tiling=False))
    steps = []
    while (s := b.reduce_memory()) is not None:
        steps.append(s)
        assert len(steps) < 10
    assert steps == ["VAE tiling on (240x416 px tiles)", "VAE tiles of 180x312 px", "VAE tiles of 120x208 px"]
    assert b.pipe.vae.tile_sample_min_height == 128 and b.pipe.vae.tile_sample_stride_height == 96
