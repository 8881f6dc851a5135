"""The distribution around the backend: hooks, shipped presets, entry point,
and a render through the real ``cinescale`` command line."""

import importlib.metadata as md
import subprocess
import sys
import tomllib

import pytest
from example_testutil import driver, save_model

from cinescale_example import plugin
from cinescale_post.contracts.stages import parse_stages, resolve_ladder
from cinescale_post.testing import fresh_host


PRESETS = ("example-sd15-hd-refine", "example-sd15-1k-still")


def _presets():
    found = []
    plugin.register_presets(found.append)
    return found


def test_registers_one_backend_and_its_presets():
    host = fresh_host(plugin)
    b = host.backend("example-sd15")
    assert b.family == "unet" and b.capabilities == {"v2v", "t2i"} and b.resolve == host.resolve
    assert sorted(p.name for p in _presets()) == sorted(f"{n}.toml" for n in PRESETS)
    assert set(PRESETS) <= set(host.presets())


@pytest.mark.parametrize("res", _presets(), ids=lambda r: r.name)
def test_presets_validate_and_resolve_on_the_sd15_base_size(res):
    data = tomllib.loads(res.read_text())
    assert data["backend"] == "example-sd15" and data["schema"] == 1
    out = (data["output"]["width"], data["output"]["height"])
    stages, _ = driver().validate(stages=tuple(data["stages"]), options=data.get("backend_options", {}),
                                          size=out, source=None)
    mode = "render" if "refine" in res.name else "generate"
    ladder = resolve_ladder(parse_stages(stages), mode=mode, base_size=(512, 512), output=out, multiple=8)
    assert ladder[-1].size == out and ladder[-1].dilation == out[0] // 512


def test_entry_point_is_declared():
    eps = [e for e in md.entry_points(group="cinescale_post") if e.name == "example"]
    if not eps:
        pytest.skip("cinescale-example is not installed (pip install -e plugins/cinescale-example)")
    assert eps[0].value == "cinescale_example.plugin" and eps[0].dist.metadata["Name"] == "cinescale-example"


def test_render_through_the_cli(tmp_path_factory, tmp_path):
    if not [e for e in md.entry_points(group="cinescale_post") if e.name == "example"]:
        pytest.skip("cinescale-example is not installed (pip install -e plugins/cinescale-example)")
    from cinescale_post.testing import make_clip

    model = save_model(tmp_path_factory)
    clip = make_clip(tmp_path / "plate.mov", frames=2, size=(64, 48))
    out = tmp_path / "out" / "sh010.####.exr"
    cmd = [sys.executable, "-m", "cinescale_post", "render", str(clip), "-o", str(out),
           "--preset", "example-sd15-hd-refine", "--model", model, "--prompt", "a test", "--progress", "none",
           "--set", "dtype=float32", "--set", "output.codec=exr", "--set", "output.width=128",
           "--set", "output.height=96", "--set", "stages.0.steps=2", "--set", "stages.0.dilate_tau=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.parent.glob("*.exr")) == ["sh010.1001.exr", "sh010.1002.exr"]
