"""Registration, presets with the reference defaults, option validation (no torch work)."""

import importlib.metadata as md
import tomllib

import pytest

from cinescale_post.contracts.stages import resolve_ladder
from cinescale_post.contracts.errors import PlanError
from cinescale_wan import plugin
from cinescale_post.testing import adapter_driver
from cinescale_wan.backend import WanAdapter
from cinescale_wan.options import WAN_NEGATIVE, parse_wan_stages


def _presets():
    found = []
    plugin.register_presets(found.append)
    return found


def _validate(**kw):
    return adapter_driver(WanAdapter()).validate(**kw)


def test_registers_backend_and_four_presets():
    backends = []
    plugin.register_backends(backends.append)
    a = backends[0]
    assert [x.id for x in backends] == ["wan"] and isinstance(a, WanAdapter)
    caps = a.capabilities
    assert caps.family == "dit" and caps.latent_layout == "video" and not caps.problems()
    assert {"t2v", "i2v", "v2v"} <= caps.tasks
    assert (caps.frame_rule.multiple, caps.frame_rule.offset) == (4, 1)
    assert caps.attention  # declares its self-attention: the core's context parallelism applies
    b = adapter_driver(a)  # what host.backend("wan") hands a render
    assert b.family == "dit" and b.temporal and {"t2v", "i2v", "v2v"} <= b.capabilities
    assert sorted(p.name[:-5] for p in _presets()) == ["wan-2k-t2v", "wan-3k-t2v", "wan-4k-t2v", "wan-uhd-refine",
                                                       "wan-uhd-refine-aces"]


REFERENCE = {  # preset -> [(size, shift, ntk h/w, restart)] (ALGORITHM.md 4.4 / 4.5)
    "wan-2k-t2v": [((1920, 1088), 7.0, 20.0, 0)],
    "wan-3k-t2v": [((1920, 1088), 7.0, 20.0, 0), ((2880, 1632), 9.0, 25.0, 15)],
    "wan-4k-t2v": [((1920, 1088), 7.0, 20.0, 0), ((3840, 2176), 11.0, 25.0, 15)],
    "wan-uhd-refine": [((3840, 2160), 11.0, 25.0, 15)],
    "wan-uhd-refine-aces": [((3840, 2160), 11.0, 25.0, 15)],
}


@pytest.mark.parametrize("res", _presets(), ids=lambda r: r.name)
def test_presets_validate_with_reference_defaults(res):
    data = tomllib.loads(res.read_text())
    name = res.name[:-5]
    assert data["backend"] == "wan" and data["schema"] == 1 and data["negative_prompt"] == WAN_NEGATIVE
    out = (data["output"]["width"], data["output"]["height"])
    st, opts = _validate(stages=tuple(data["stages"]), options=data.get("backend_options", {}), size=out,
                         source=None)
    specs, wans = parse_wan_stages(st)
    assert all((s.steps, s.guidance, s.fusion, s.dilation, s.cosine_scale) == (50, 5.0, None, False, None)
               for s in specs)
    mode = "render" if "refine" in name else "generate"
    lad = resolve_ladder(specs, mode=mode, base_size=(1280, 720), output=out, multiple=16)
    got = [(s.size, w.shift, w.ntk[1], s.restart_index) for s, w in zip(lad, wans)]
    assert got == REFERENCE[name]
    assert all(w.ntk[0] == 1.0 and w.ntk[1] == w.ntk[2] and w.attention_scale is True for w in wans)
    assert opts["lora_scale"] == 1.0 and opts["lora_merge"] and opts["sigmas"] == "reference"
    assert opts["scheduler"] == "flow-euler" and opts["vae_tiling"]
    if mode == "generate":
        assert opts["num_frames"] == 81 and opts["fps"] == 15 and lad[0].base
    else:
        assert data["window"]["size"] == 81 and opts["posterior"] == "mean"


def test_upscaled_stage_defaults_to_ntk25_and_wan_core_defaults():
    specs, wans = parse_wan_stages([{"size": [32, 32]}, {"size": [64, 64]}])
    assert wans[0].ntk == (1.0, 20.0, 20.0) and wans[1].ntk == (1.0, 25.0, 25.0)
    assert specs[1].restart_index == 15 and specs[1].upscaler == "latent-trilinear" and specs[1].guidance == 5.0


@pytest.mark.parametrize("stage,match", [
    ({"shift": 0}, "shift"), ({"ntk": [1, 20]}, "ntk"), ({"ntk_rule": "yarn"}, "ntk_rule"),
    ({"attention_scale": "big"}, "attention_scale"), ({"fusion": "scale-fusion"}, "UNet"),
    ({"dilation": True}, "dilate"), ({"steps": 0}, "steps"), ({"bogus": 1}, "unknown"),
])
def test_bad_stage_values_name_the_key(stage, match):
    with pytest.raises(PlanError, match=match):
        _validate(stages=(stage,), options={}, size=(64, 64), source=None)


@pytest.mark.parametrize("opts,match", [
    ({"num_frames": 80}, "4n\\+1"), ({"offload": "disk"}, "offload"), ({"lora": "/nope.ckpt"}, "does not exist"),
    ({"sigmas": "karras"}, "sigmas"), ({"vae_tile": [8, 8]}, "vae_tile"), ({"whatever": 1}, "unknown"),
])
def test_bad_options_name_the_key(opts, match):
    with pytest.raises(PlanError, match=match):
        _validate(stages=(), options=opts, size=(64, 64), source=None)


def test_lora_with_a_pickle_suffix_only_if_known(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(PlanError, match="unsupported"):
        _validate(stages=(), options={"lora": str(tmp_path / "x.bin")}, size=(64, 64), source=None)


def test_entry_point_is_declared():
    eps = [e for e in md.entry_points(group="cinescale_post") if e.name == "wan"]
    if not eps:
        pytest.skip("cinescale-wan is not installed (pip install -e plugins/cinescale-wan)")
    assert eps[0].value == "cinescale_wan.plugin"
