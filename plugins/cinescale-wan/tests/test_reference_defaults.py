"""Defaults that follow the CineScale reference (issue 12)."""

from cinescale_wan.options import WanOptions, parse_wan_stages


def test_upscaled_stage_shift_defaults_to_the_pro_pipelines_9():
    specs, wans = parse_wan_stages([{"size": [64, 64]}, {"size": [128, 128]}, {"size": [256, 256], "shift": 11.0}])
    assert [w.shift for w in wans] == [7.0, 9.0, 11.0]
    assert [w.ntk for w in wans][1] == (1.0, 25.0, 25.0)
    assert dict(specs[1].extra)["shift"] == 9.0


def test_vae_tiles_are_the_references_30x52_latents_stride_15x26():
    o = WanOptions.from_dict({})
    assert o.vae_tile == (30 * 8, 52 * 8) and o.vae_stride == (15 * 8, 26 * 8)
    assert o.to_dict()["vae_tile"] == [240, 416]


def test_vae_and_timestep_run_in_the_model_dtype_on_accelerators_only():
    from cinescale_wan.options import in_model_dtype

    o = WanOptions.from_dict({})
    assert (o.vae_dtype, o.timestep_dtype) == ("auto", "auto")
    assert in_model_dtype(o.vae_dtype, "cuda:0") and in_model_dtype(o.timestep_dtype, "cuda")
    assert not in_model_dtype(o.vae_dtype, "cpu") and not in_model_dtype(o.timestep_dtype, "cpu")
    assert not in_model_dtype("float32", "cuda") and in_model_dtype("model", "cpu")
