"""Defaults that follow the CineScale reference (issue 12)."""

from cinescale_wan.options import WanOptions, parse_wan_stages


def test_upscaled_stage_shift_defaults_to_the_pro_pipelines_9():
    specs, wans = parse_wan_stages([{"size": [64, 64]}, {"size": [128, 128]}, {"size": [256, 256], "shift": 11.0}])
    # the first stage's default depends on the model (7.0 t2v / 5.0 i2v, resolved at run time, below)
    assert [w.shift for w in wans] == [None, 9.0, 11.0] and wans[0].shift_for(i2v=False) == 7.0
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


def test_image_to_video_first_stage_shift_defaults_to_the_i2v_scripts_5(models):
    """Issue 12: a first stage that gives no shift runs at 5.0 on an image-to-video
    model (the reference I2V script) and 7.0 on a text-to-video one; an explicit
    shift wins, and upscaled stages keep 9.0."""
    from wan_helpers import driver, make_plan

    stages = ({"size": [32, 32], "steps": 2}, {"size": [64, 64], "steps": 2, "restart_step": 1})
    got = {}
    for layout in ("i2v", "t2v"):
        for given in (None, 7.0):
            st = [dict(stages[0], **({} if given is None else {"shift": given})), stages[1]]
            d = driver()
            d.load(make_plan(models[layout], stages=st, options={"max_sequence_length": 512}))
            lad = d.ladder("generate", (64, 64))
            got[layout, given] = [d.model.stage_info(s)["shift"] for s in lad]
            sched = d.model.make_scheduler(lad[0])  # the scheduler the loop runs the stage with
            assert float(sched.config.shift) == got[layout, given][0]
            d.unload()
    assert got["i2v", None] == [5.0, 9.0] and got["t2v", None] == [7.0, 9.0]
    assert got["i2v", 7.0] == got["t2v", 7.0] == [7.0, 9.0]
