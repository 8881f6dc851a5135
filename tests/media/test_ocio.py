"""OCIO colour management: validation, exact round trip, and a render where
the backend sees display-referred values while the EXR keeps scene-linear."""

import numpy as np
import OpenEXR
import pytest

from cinescale_post import plan as plan_mod
from cinescale_post.errors import PlanError
from cinescale_post.media.ocio import DEFAULT_CONFIG, Converter, validate
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.run import run

from ..helpers import write_preset


def test_validate_names_key_value_and_fix(monkeypatch):
    assert validate({}, "p.toml") == {"mode": "video"}
    with pytest.raises(PlanError, match="colour.mode"):
        validate({"mode": "aces"}, "p.toml")
    with pytest.raises(PlanError, match="pin the full versioned URI"):
        validate({"mode": "ocio", "config": "ocio://default", "input": "ACEScg"}, "p.toml")
    with pytest.raises(PlanError) as e:
        validate({"mode": "ocio", "input": "ACEScgg"}, "p.toml")
    assert "colour.input" in str(e.value) and "ACEScg" in str(e.value)
    monkeypatch.delenv("OCIO", raising=False)
    with pytest.raises(PlanError, match="OCIO"):
        validate({"mode": "ocio", "config": "$OCIO", "input": "ACEScg"}, "p.toml")
    ok = validate({"mode": "ocio", "input": "ACEScg"}, "p.toml")
    assert ok["config"] == DEFAULT_CONFIG and ok["model"] == "sRGB Encoded Rec.709 (sRGB)"


def test_round_trip_is_exact_for_in_gamut_values():
    conv = Converter(validate({"mode": "ocio", "input": "ACEScg"}, "p"))
    rng = np.random.default_rng(0)
    lin = (rng.random((16, 16, 3), dtype=np.float32) * 0.9 + 0.05) * np.float32([0.9, 0.8, 0.7])
    back = conv.from_model(conv.to_model(lin))
    assert np.abs(back - lin).max() < 1e-4
    assert not np.allclose(conv.to_model(lin), lin)  # it did transform


def test_render_feeds_the_model_display_values_and_keeps_linear_out(tmp_path, host):
    grey = np.full((48, 64, 3), 0.18, np.float32)
    grey[:8, :8] = 4.0  # a highlight above 1.0 must survive the trip
    src = tmp_path / "in"
    src.mkdir()
    for n in (1001, 1002):
        with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                          {"RGB": grey.astype(np.float16)}) as f:
            f.write(str(src / f"plate.{n}.exr"))
    seen = []
    b = host.backend("test-identity")
    real = type(b).render

    def render(job):
        seen.append(float(job.frames[0].rgb[40, 40, 0]))
        return real(b, job)

    b.render = render
    preset = write_preset(tmp_path / "p.toml", backend="test-identity", codec="exr", width=64, height=48,
                          options='pixel = "float"\ncompression = "zip"')
    with open(preset, "a") as fh:
        fh.write('\n[colour]\nmode = "ocio"\ninput = "ACEScg"\n')
    p = plan_mod.build(str(preset), host=host, input=str(src / "plate.####.exr"), output=str(tmp_path / "o.####.exr"))
    assert p.colour["input"] == "ACEScg" and p.to_dict()["colour"]["config"] == DEFAULT_CONFIG
    run(p, host, NullSink())
    assert 0.4 < seen[0] < 0.5  # 18 % grey, sRGB-encoded, is what the model saw
    with OpenEXR.File(str(tmp_path / "o.1001.exr")) as f:
        out = f.channels()["RGB"].pixels
    assert abs(float(out[40, 40, 0]) - 0.18) < 1e-3 and float(out[2, 2, 1]) > 3.9
