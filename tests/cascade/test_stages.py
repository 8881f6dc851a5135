import subprocess
import sys

import pytest

from cinescale_post.contracts.stages import StageSpec, default_stages, parse_stages, resolve_ladder
from cinescale_post.contracts.errors import PlanError


def test_defaults_are_the_reference():
    s = StageSpec()
    assert (s.steps, s.restart, s.guidance, s.cosine_scale, s.dilate_tau) == (50, 0.3, 7.5, 2.0, 35)
    assert (s.upscaler, s.fusion, s.blur, s.jitter, s.fast_mode, s.dilation) == (
        "vae-bicubic", "scale-fusion", "3d", True, False, True)
    assert s.restart_index == 15
    assert StageSpec(steps=4, restart=0.5).restart_index == 2
    assert StageSpec(restart_step=7).restart_index == 7


def test_round_trip_and_errors_name_the_key():
    specs = parse_stages([{"scale": 1}, {"size": [2048, 1024], "fusion": "none", "cosine_scale": None}])
    assert specs[1].size == (2048, 1024) and specs[1].fusion is None and specs[1].cosine_scale is None
    again = parse_stages([s.to_dict() for s in specs])
    assert again == specs
    for bad, key in [({"steps": 0}, "stages.0.steps"), ({"restart": 1.5}, "stages.0.restart"),
                     ({"blur": "2d"}, "stages.0.blur"), ({"size": [10, 10]}, "stages.0.size"),
                     ({"size": "huge"}, "stages.0.size"), ({"jitter": 1}, "stages.0.jitter"),
                     ({"size": "output", "scale": 2}, "stages.0"), ({"steps": 10, "restart_step": 10},
                                                                    "stages.0.restart_step")]:
        with pytest.raises(PlanError, match=key.replace(".", r"\.")):
            parse_stages([bad])
    with pytest.raises(PlanError, match="unknown key"):
        parse_stages([{"sizee": 1}])


def test_ladder_sdxl_sizes_and_factors():
    specs = parse_stages([{"scale": 1}, {"scale": 2}, {"scale": 4}])
    lad = resolve_ladder(specs, mode="generate", base_size=(1024, 1024), output=(4096, 4096), multiple=32)
    assert [s.size for s in lad] == [(1024, 1024), (2048, 2048), (4096, 4096)]
    assert [s.base for s in lad] == [True, False, False]
    assert [s.restart_index for s in lad] == [0, 15, 15]
    assert [s.dilation for s in lad] == [1, 2, 4]
    assert [s.fusion for s in lad] == [None, "scale-fusion", "scale-fusion"]
    # the same preset on a tiny model (base 64) gives a tiny ladder
    tiny = resolve_ladder(specs, mode="generate", base_size=(64, 64), output=(4096, 4096), multiple=32)
    assert [s.size for s in tiny] == [(64, 64), (128, 128), (256, 256)]


def test_default_ladders():
    d = default_stages("generate", (1024, 1024), (4096, 4096))
    assert [s.size for s in d] == [(1024, 1024), (2048, 2048), (4096, 4096)]
    assert len(default_stages("generate", (1024, 1024), (8192, 8192))) == 4
    assert len(default_stages("generate", (1024, 1024), (1024, 1024))) == 1
    lad = resolve_ladder([], mode="generate", base_size=(1024, 1024), output=(3840, 2160), multiple=32)
    assert lad[-1].size == (3840, 2176) and lad[0].size == (960, 544)
    r = resolve_ladder([], mode="render", base_size=(1024, 1024), output=(3840, 2160), multiple=8)
    assert len(r) == 1 and r[0].size == (3840, 2160) and not r[0].base
    assert r[0].dilation == 3 and r[0].scale == (2, 3) and r[0].restart_index == 15


def test_importing_the_core_is_light():
    code = ("import sys, cinescale_post.cascade, cinescale_post.builtin.fusions, "
            "cinescale_post.builtin.latent_upscalers; "
            "bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_turbo_dilation_base_is_1024_while_the_ladder_base_is_512():
    """The reference's turbo pipeline: 512 -> 1024 -> 2048, fusion keyed to a
    512 base (scale numbers 1, 2, 4) but dilation W // 1024 (1, 1, 2)."""
    specs = parse_stages([{"scale": 1}, {"scale": 2}, {"scale": 4}])
    lad = resolve_ladder(specs, mode="generate", base_size=(512, 512), output=(2048, 2048),
                         dilation_base=(1024, 1024))
    assert [s.size for s in lad] == [(512, 512), (1024, 1024), (2048, 2048)]
    assert [s.scale for s in lad] == [(1, 1), (2, 2), (4, 4)]
    assert [s.dilation for s in lad] == [1, 1, 2]
