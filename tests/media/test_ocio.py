"""OCIO colour management: names, the invertible shaper, the carry-and-blend
chain (exact with no model, no seams with one), and a render where the
backend sees display-referred values while the EXR keeps scene-linear.
The same chain through the real tiny SDXL (which clamps) is tested in
plugins/cinescale-sdxl/tests/test_sdxl_ocio.py."""

import numpy as np
import OpenEXR
import PyOpenColorIO as ocio
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import PlanError
import cinescale_post.media.ocio as ocio_mod
from cinescale_post.media.ocio import DEFAULT_CONFIG, Converter, Shaper, validate
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run

from ..helpers import write_preset

HALF = 2.0 ** -11  # half-float relative precision


def _config():
    return ocio.Config.CreateFromFile(DEFAULT_CONFIG)


def _convert(rgb, src, dst):
    out = np.ascontiguousarray(rgb, np.float32).copy()
    _config().getProcessor(src, dst).getDefaultCPUProcessor().applyRGB(out)
    return out


def hdr_plate(h=48, w=64, seed=0):
    """Scene-linear ACEScg: 0..100 with negatives and saturated colours."""
    g = np.random.default_rng(seed)
    x = (g.random((h, w, 3)) * 100.0).astype(np.float32)
    x[::3] *= 0.01  # rows in the model's range
    x[1::7] -= 50.0  # negatives
    x[2::5, ::2] = [0.6, 0.02, 0.01]  # saturated: outside Rec.709
    return x


def test_validate_names_key_value_and_fix(monkeypatch):
    assert validate({}, "p.toml") == {"mode": "video"}
    with pytest.raises(PlanError, match="colour.mode"):
        validate({"mode": "aces"}, "p.toml")
    with pytest.raises(PlanError, match="pin the full versioned URI"):
        validate({"mode": "ocio", "config": "ocio://default", "input": "ACEScg"}, "p.toml")
    monkeypatch.delenv("OCIO", raising=False)
    with pytest.raises(PlanError, match="OCIO"):
        validate({"mode": "ocio", "config": "$OCIO", "input": "ACEScg"}, "p.toml")
    ok = validate({"mode": "ocio", "input": "ACEScg"}, "p.toml")
    assert ok["config"] == DEFAULT_CONFIG and ok["output"] == "ACEScg" and ok["working"] == "Linear Rec.709 (sRGB)"
    assert len(ok["chain"]) == 6 and "ACEScg -> Linear Rec.709" in ok["chain"][0]
    with pytest.raises(PlanError, match="colour.model was replaced"):
        validate({"mode": "ocio", "input": "ACEScg", "model": "sRGB Encoded Rec.709 (sRGB)"}, "p.toml")
    with pytest.raises(PlanError, match="highlight_blend"):
        validate({"mode": "ocio", "input": "ACEScg", "highlight_blend": [0.99, 0.97]}, "p.toml")
    with pytest.raises(PlanError, match="not scene-linear"):
        validate({"mode": "ocio", "input": "ACEScg", "working": "ACEScct"}, "p.toml")


@pytest.mark.parametrize("name, canonical", [
    ("ACEScg", "ACEScg"), ("ACEScct", "ACEScct"), ("ACES2065-1", "ACES2065-1"),
    ("ARRI LogC3 (EI800)", "ARRI LogC3 (EI800)"), ("ARRI LogC4", "ARRI LogC4"),
    ("S-Log3 S-Gamut3.Cine", "S-Log3 S-Gamut3.Cine"), ("Log3G10 REDWideGamutRGB", "Log3G10 REDWideGamutRGB"),
    ("Linear Rec.709 (sRGB)", "Linear Rec.709 (sRGB)"), ("sRGB Encoded Rec.709 (sRGB)", "sRGB Encoded Rec.709 (sRGB)"),
    ("lin_ap1", "ACEScg"), ("scene_linear", "ACEScg"), ("ACES - ACEScg", "ACEScg"), ("acescct", "ACEScct"),
    ("default (linear)", "Linear Rec.709 (sRGB)"), ("AlexaV3LogC", "ARRI LogC3 (EI800)"), ("sRGB", "sRGB Encoded Rec.709 (sRGB)"),
    ("Input/Sony/S-Log3 S-Gamut3.Cine", "S-Log3 S-Gamut3.Cine"),
])
def test_camera_log_and_aces_inputs_by_name(name, canonical):
    assert validate({"mode": "ocio", "input": name}, "p")["input"] == canonical


@pytest.mark.parametrize("typo, expect", [("ACEScgg", "ACEScg"), ("ARRI LogC", "ARRI LogC4"),
                                          ("Log3G10", "Log3G10 REDWideGamutRGB"), ("slog3 sgamut3 cine", "S-Log3 S-Gamut3.Cine")])
def test_misspelt_name_gets_closest_matches(typo, expect):
    with pytest.raises(PlanError) as e:
        validate({"mode": "ocio", "input": typo}, "p.toml")
    assert "colour.input" in str(e.value) and repr(typo) in str(e.value)
    assert f"'{expect}'" in e.value.fix and e.value.fix.startswith("did you mean")


def test_chromaticities_follow_the_output_space():
    c = _config()
    assert validate({"mode": "ocio", "input": "ACEScg"}, "p")["chromaticities"] == list(ocio_mod.GAMUTS["AP1"])
    assert validate({"mode": "ocio", "input": "ACEScct", "output": "ACES2065-1"}, "p")["chromaticities"] == \
        list(ocio_mod.GAMUTS["AP0"])
    assert ocio_mod.chromaticities(c, "ACEScct") == ocio_mod.GAMUTS["AP1"]
    assert ocio_mod.chromaticities(c, "S-Log3 S-Gamut3.Cine") == ocio_mod.GAMUTS["S-Gamut3.Cine"]
    # the published D65 primaries agree with what the config's matrices imply
    for name, gamut in [("Linear ARRI Wide Gamut 3", "ARRI Wide Gamut 3"), ("Linear ARRI Wide Gamut 4", "ARRI Wide Gamut 4"),
                        ("Linear S-Gamut3.Cine", "S-Gamut3.Cine"), ("Linear REDWideGamutRGB", "REDWideGamutRGB"),
                        ("Linear Rec.2020", "Rec.2020"), ("Linear P3-D65", "P3-D65"), ("Linear V-Gamut", "V-Gamut")]:
        derived = np.array(ocio_mod.chromaticities(c, name))
        table = np.array(ocio_mod.GAMUTS[gamut])
        # derive through the config, bypassing the table
        cs_derived = []
        proc = c.getProcessor(name, "Linear Rec.709 (sRGB)").getDefaultCPUProcessor()
        m = np.array([[0.4123908, 0.35758434, 0.18048079], [0.21263901, 0.71516868, 0.07219232],
                      [0.01933082, 0.11919478, 0.95053215]])
        for v in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]):
            a = np.array(v, np.float32)
            proc.applyRGB(a)
            xyz = m @ a.astype(np.float64)
            cs_derived += [xyz[0] / xyz.sum(), xyz[1] / xyz.sum()]
        assert np.abs(np.array(cs_derived) - table).max() < 0.005, name
        assert np.array_equal(derived, table)
    # an unlisted scene-linear space is derived; an unlisted log space has none
    assert ocio_mod.chromaticities(c, "Linear CinemaGamut D55") is not None
    assert ocio_mod.chromaticities(c, "S-Log3 Venice S-Gamut3.Cine") is None


def test_shaper_is_c1_monotonic_and_exactly_invertible():
    s = Shaper(0.8)
    x = np.concatenate([np.linspace(0, 1, 2001), np.geomspace(1.001, 1e4, 500)])
    y = s.forward(x)
    assert np.all(np.diff(y) > 0) and y.max() < 1.0
    assert abs(float(s.forward(np.float64(0.18))) - 0.4614) < 1e-3  # mid-grey as sRGB shows it
    assert np.abs(s.inverse(y) - x).max() <= 1e-9 * np.maximum(x, 1).max()
    k, e = 0.8, 1e-7  # same slope either side of the knee
    left = (s.forward(np.float64(k)) - s.forward(np.float64(k - e))) / e
    right = (s.forward(np.float64(k + e)) - s.forward(np.float64(k))) / e
    assert abs(left - right) < 1e-5


@pytest.mark.parametrize("space", ["ACEScg", "ACES2065-1", "Linear Rec.709 (sRGB)", "ACEScct", "ARRI LogC4",
                                   "S-Log3 S-Gamut3.Cine", "Log3G10 REDWideGamutRGB", "ARRI LogC3 (EI800)"])
def test_chain_alone_returns_an_hdr_plate_within_half_precision(space):
    plate = _convert(hdr_plate(), "ACEScg", space)
    conv = Converter(validate({"mode": "ocio", "input": space}, "p"))
    shown, _ = conv.to_model(plate)
    assert shown.min() >= 0.0 and shown.max() < 1.0  # what a clamping backend keeps
    back = conv.round_trip(plate)
    rel = np.abs(back - plate) / np.maximum(np.abs(plate), 1e-3)
    assert rel.max() < HALF / 4, (space, rel.max())


def _model_change(display, amount=0.05):
    """A stand-in for a model that brightens everything and clamps (pure numpy)."""
    return np.clip(display + amount, 0.0, 1.0)


@pytest.mark.parametrize("amount", [0.05, -0.05, 0.02, -0.02])
def test_blend_has_no_seam_at_the_range_boundary_and_carries_what_the_model_cannot_hold(amount):
    conv = Converter(validate({"mode": "ocio", "input": "Linear Rec.709 (sRGB)"}, "p"))
    ramp = np.geomspace(0.05, 100.0, 4000, dtype=np.float32)
    neg = -np.geomspace(0.5, 1e-4, 1000).astype(np.float32)
    row = np.concatenate([neg, ramp])
    plate = np.repeat(row[None, :, None], 3, axis=2).repeat(2, axis=0)
    shown, carry = conv.to_model(plate)
    model = _model_change(shown, amount)
    out = conv.from_model(model, carry)[0, :, 0]
    change = out - row
    # in range the model's change applies; beyond, the plate itself
    grey = np.argmin(np.abs(row - 0.18))
    assert abs(change[grey]) > 0.005
    assert np.all(change[row > 2.5] == 0.0) and np.all(change[row < -0.02] == 0.0)
    # no seam: across the blend bands the output steps no more than the plate does
    band = (row[1:] > -0.1) & (row[1:] < 4.0)
    step = np.abs(np.diff(out))[band].max()
    assert step < 1.5 * np.abs(np.diff(row))[band].max()
    # the hard switch it replaces (model in range, plate outside) jumps when the model darkens
    hard = np.where((row >= 0) & (row <= 2.37), conv.shaper.inverse(np.minimum(model[0, :, 0], 0.99)), row)
    if amount < 0:
        assert np.abs(np.diff(hard))[band].max() > 10 * step


def test_mask_treats_out_of_gamut_colours_as_carried():
    conv = Converter(validate({"mode": "ocio", "input": "ACEScg"}, "p"))
    sat = np.full((4, 4, 3), [0.6, 0.02, 0.01], np.float32)  # ACEScg red outside Rec.709
    assert conv.to_working(sat).min() < -0.02
    shown, carry = conv.to_model(sat)
    back = conv.from_model(_model_change(shown, 0.2), carry)
    assert np.abs(back - sat).max() <= 1e-6


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
    assert p.to_dict()["colour"]["chain"][2].startswith("backend")  # the chain is in the manifest's plan
    run(p, host, NullSink())
    assert 0.4 < seen[0] < 0.5  # 18 % grey (ACEScg) through the shaper is what the model saw
    with OpenEXR.File(str(tmp_path / "o.1001.exr")) as f:
        hdr = dict(f.header())
        out = f.channels()["RGB"].pixels
    assert abs(float(out[40, 40, 0]) - 0.18) < 1e-3 and float(out[2, 2, 1]) > 3.99
    assert hdr.get("colorspace") == "ACEScg", hdr
    assert np.allclose(np.array(hdr["chromaticities"], dtype=np.float64).ravel(), ocio_mod.GAMUTS["AP1"], atol=1e-6)


def test_linear_output_into_a_movie_is_warned_about():
    lin = validate({"mode": "ocio", "input": "ACEScg"}, "p")
    assert "will clip" in ocio_mod.output_note(lin, "movie") and "colour.output=ACEScct" in ocio_mod.output_note(lin, "movie")
    assert ocio_mod.output_note(lin, "sequence") is None
    assert ocio_mod.output_note(validate({"mode": "ocio", "input": "ACEScct"}, "p"), "movie") is None
    assert ocio_mod.output_note({"mode": "video"}, "movie") is None
