import importlib.metadata as md
import tomllib

import pytest
from sdxl_testutil import driver

from cinescale_post.contracts.stages import parse_stages, resolve_ladder
from cinescale_sdxl import plugin


def _presets():
    found = []
    plugin.register_presets(found.append)
    return found


def test_registers_backend_and_four_presets():
    backends = []
    plugin.register_backends(backends.append)
    assert [b.id for b in backends] == ["sdxl"] and backends[0].capabilities.family == "unet"
    assert {"t2i", "v2v"} <= backends[0].capabilities.tasks
    names = sorted(p.name[:-5] for p in _presets())
    assert names == ["sdxl-2k-still", "sdxl-4k-still", "sdxl-8k-still", "sdxl-turbo-2k-still", "sdxl-turbo-4k-still",
                     "sdxl-uhd-refine", "sdxl-uhd-refine-aces", "sdxl-uhd-refine-anchored"]


# the turbo presets follow the reference's turbo pipeline instead (test_sdxl_turbo.py)
@pytest.mark.parametrize("res", [r for r in _presets() if "turbo" not in r.name], ids=lambda r: r.name)
def test_presets_validate_with_reference_defaults(res):
    data = tomllib.loads(res.read_text())
    assert data["backend"] == "sdxl" and data["schema"] == 1
    st, opts = driver().validate(stages=tuple(data["stages"]), options=data.get("backend_options", {}),
                                      size=(data["output"]["width"], data["output"]["height"]), source=None)
    specs = parse_stages(st)
    for s in specs:
        assert (s.steps, s.guidance) == (50, 7.5)
    for s in specs[1:] if "still" in res.name else specs:
        assert (s.restart_index, s.cosine_scale, s.dilate_tau, s.upscaler, s.fusion) == (
            15, 2.0, 35, "vae-bicubic", "scale-fusion")
    assert opts["freeu"] and opts["vae_tiling"]
    mode = "render" if "refine" in res.name else "generate"
    out = (data["output"]["width"], data["output"]["height"])
    lad = resolve_ladder(specs, mode=mode, base_size=(1024, 1024), output=out, multiple=8)
    assert lad[-1].size == out
    if mode == "generate":
        assert lad[0].size == (1024, 1024) and [s.dilation for s in lad][1:] == [2 ** i for i in range(1, len(lad))]


def test_entry_point_is_declared():
    eps = [e for e in md.entry_points(group="cinescale_post") if e.name == "sdxl"]
    if not eps:
        pytest.skip("cinescale-sdxl is not installed (pip install -e plugins/cinescale-sdxl)")
    assert eps[0].value == "cinescale_sdxl.plugin"


def test_reference_refine_has_no_anchoring_and_the_anchored_variant_has_it():
    """Issue 12: FreeScale has no low-frequency anchoring, so the reference-named
    preset turns it off; sdxl-uhd-refine-anchored keeps the measured default."""
    by_name = {p.name[:-5]: tomllib.loads(p.read_text()) for p in _presets()}
    assert by_name["sdxl-uhd-refine"]["backend_options"]["anchor_lowfreq"] == 0.0
    assert by_name["sdxl-uhd-refine-anchored"]["backend_options"]["anchor_lowfreq"] == 1.0
    plain, anchored = (dict(by_name[n]) for n in ("sdxl-uhd-refine", "sdxl-uhd-refine-anchored"))
    for d in (plain, anchored):
        d.pop("description"), d.pop("backend_options")
    assert plain == anchored  # the same render otherwise
