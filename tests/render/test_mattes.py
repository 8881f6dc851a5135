"""Issue 25: mattes (``--matte``, ``[matte]``) through the render loop with
the noise test backend (it changes every pixel): holdout keeps the plate's
draft outside the matte, per-frame sequences move, missing matte frames
follow ``--missing``, the matte follows the picture's geometry (anamorphic
desqueeze, pad), and the plate's own alpha can be the matte. The tiny SDXL
and Wan tests are in the plugins' test folders."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import OpenEXR
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import InputError, PlanError
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip
from tests.helpers import recorder, write_preset


def _matte_png(path, array, bits=8):
    scale = 255 if bits == 8 else 65535
    codes = np.rint(np.clip(array, 0, 1) * scale).astype(np.uint8 if bits == 8 else np.uint16)
    cv2.imwrite(str(path), np.repeat(codes[..., None], 3, -1))
    return path


def _exr(path):
    with OpenEXR.File(str(path)) as f:
        return np.asarray(f.channels()["RGB"].pixels, np.float32)


def _render(host, tmp_path, name, clip, *, backend="test-noise", matte=None, sets=(), size=(128, 96), missing=None,
            fit="pad"):
    preset = write_preset(tmp_path / f"{name}.toml", backend=backend, codec="exr", width=size[0], height=size[1],
                          chunk=0, options='pixel = "float"', fit=fit)
    out = tmp_path / name / "f.####.exr"
    plan = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out), overrides=tuple(sets),
                          matte=matte, missing=missing)
    run(plan, host, recorder())
    return plan, {int(p.name.split(".")[1]): _exr(p) for p in sorted(out.parent.glob("f.*.exr"))}


@pytest.fixture()
def plate(tmp_path):
    return make_clip(tmp_path / "plate.mov", frames=3, size=(64, 48), codec="prores_ks", profile="hq",
                     content="gradient")


def test_holdout_leaves_the_plate_draft_outside_the_matte(host, tmp_path, plate):
    half = np.zeros((48, 64), np.float32)
    half[:, 32:] = 1.0
    m = _matte_png(tmp_path / "half.png", half)
    _, draft = _render(host, tmp_path, "draft", plate, backend="draft")
    plan, held = _render(host, tmp_path, "held", plate, matte=str(m), sets=("matte.mode=holdout",))
    _, free = _render(host, tmp_path, "free", plate)
    assert plan.matte == {"source": str(m), "kind": "image", "channel": "luma", "mode": "holdout", "missing": []}
    for n in (1001, 1002, 1003):
        # left of the edge (minus the Lanczos reach of the matte's resample): exactly the draft
        np.testing.assert_allclose(held[n][:, :56], draft[n][:, :56], atol=1e-6)
        np.testing.assert_allclose(held[n][:, 72:], free[n][:, 72:], atol=1e-6)  # right: the model's
        assert np.abs(held[n][:, 72:] - draft[n][:, 72:]).mean() > 0.01


def test_a_matte_sequence_moves_with_the_plate_and_missing_frames_follow_missing(host, tmp_path, plate):
    for i, n in enumerate((1001, 1002, 1003)):
        if n == 1002:
            continue  # a hole in the roto
        a = np.zeros((48, 64), np.float32)
        a[16:32, 8 + 16 * i: 24 + 16 * i] = 1.0
        _matte_png(tmp_path / f"roto.{n:04d}.png", a, bits=16)
    pattern = str(tmp_path / "roto.####.png")
    with pytest.raises(InputError, match=r"no matte for plate frames 1002") as e:
        _render(host, tmp_path, "err", plate, matte=pattern, sets=("matte.mode=holdout",))
    assert "--missing black" in e.value.fix
    _, draft = _render(host, tmp_path, "draft", plate, backend="draft")
    _, free = _render(host, tmp_path, "free", plate)
    plan, held = _render(host, tmp_path, "held", plate, matte=pattern, sets=("matte.mode=holdout",), missing="hold")
    assert plan.matte["missing"] == [1002] and any("1002" in w for w in plan.warnings)

    def matte_seen(n):  # held = m * free + (1 - m) * draft, solved for m where the model moved the pixel
        d = free[n] - draft[n]
        ok = np.abs(d) > 0.02
        return np.where(ok, (held[n] - draft[n]) / np.where(ok, d, 1), np.nan), ok

    seen = {n: matte_seen(n) for n in held}
    # the square: plate columns 8-23, 40-55 in 1003 (output 16-47, 80-111), rows 16-31 (output 32-63)
    for n, (lo, hi) in ((1001, (16, 48)), (1003, (80, 112))):
        m, ok = seen[n]
        inside = ok[40:56, lo + 8:hi - 8]  # 6 output pixels (3 plate pixels) from the edges: Lanczos' reach
        np.testing.assert_allclose(m[40:56, lo + 8:hi - 8][inside], 1.0, atol=1e-4)
        far = ok.copy()
        far[24:72, lo - 8:hi + 8] = False
        np.testing.assert_allclose(m[far], 0.0, atol=1e-4)
    both = seen[1001][1] & seen[1002][1]  # 1002 has no matte: it holds 1001's
    np.testing.assert_allclose(seen[1002][0][both], seen[1001][0][both], atol=1e-3)
    _, black = _render(host, tmp_path, "black", plate, matte=pattern, sets=("matte.mode=holdout",), missing="black")
    np.testing.assert_allclose(black[1002], draft[1002], atol=1e-6)  # no matte there: the draft


def test_a_matte_follows_the_anamorphic_desqueeze_and_the_pad(host, tmp_path):
    # a 2x anamorphic plate, 48x48 coded, 96x48 displayed; in a 128x96 frame it is 128x64, padded 16 above/below
    clip = make_clip(tmp_path / "ana.mov", frames=1, size=(48, 48), codec="prores_ks", profile="hq")
    plan0 = plan_mod.build(str(write_preset(tmp_path / "p.toml", backend="draft", codec="exr", width=128,
                                            height=96, chunk=0)), host=host, input=str(clip),
                           output=str(tmp_path / "x" / "f.####.exr"), overrides=("input.pixel_aspect=2",))
    g = plan0.output.geometry
    assert (g.scale_w, g.scale_h) == (128, 64)
    left = np.zeros((48, 48), np.float32)
    left[:, :24] = 1.0  # the left half of the coded picture: the left half once desqueezed
    m = _matte_png(tmp_path / "left.png", left)
    sets = ("input.pixel_aspect=2", "matte.mode=holdout")
    _, draft = _render(host, tmp_path, "d", clip, backend="draft", sets=("input.pixel_aspect=2",))
    _, held = _render(host, tmp_path, "h", clip, matte=str(m), sets=sets)
    diff = np.abs(held[1001] - draft[1001]).max(axis=-1) > 1e-4
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    assert rows.min() >= 16 and rows.max() <= 79  # nothing changes in the pad
    # the left half of the desqueezed picture (64 columns), give or take the Lanczos reach (3 coded pixels)
    assert cols.min() == 0 and 64 <= cols.max() <= 72


def test_the_plates_alpha_as_matte_and_channel_errors(host, tmp_path, plate):
    rgba = make_clip(tmp_path / "rgba.mov", frames=1, size=(64, 48), codec="prores_ks", profile="4444",
                     pix_fmt="yuva444p10le", content="gradient")
    with pytest.raises(InputError, match="has no alpha channel") as e:
        _render(host, tmp_path, "a", plate, matte="alpha")
    assert "--matte" in e.value.fix
    plan = plan_mod.build(str(write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", chunk=0)),
                          host=host, input=str(rgba), output=str(tmp_path / "o" / "f.####.exr"), matte="alpha")
    assert plan.matte["channel"] == "A" and plan.matte["source"] == "alpha"
    m = _matte_png(tmp_path / "m.png", np.ones((48, 64), np.float32))
    with pytest.raises(PlanError, match="matte.channel = A but the file has no alpha") as e:
        _render(host, tmp_path, "c", plate, matte=str(m), sets=("matte.channel=A",))
    assert "matte.channel=luma" in e.value.fix
    with pytest.raises(PlanError, match="matte.mode"):
        _render(host, tmp_path, "c2", plate, matte=str(m), sets=("matte.mode=inside",))


def test_the_cli_takes_a_matte_and_the_plan_says_it(env, tmp_path, plate):
    m = _matte_png(tmp_path / "m.png", np.ones((48, 64), np.float32))
    r = subprocess.run([sys.executable, "-m", "cinescale_post", "render", str(plate), "-o",
                        str(tmp_path / "o" / "f.####.exr"), "--preset", "uhd-exr-draft", "--matte", str(m),
                        "--dry-run", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["matte"]["source"] == str(m) and plan["matte"]["mode"] == "both"
    assert any("has no detail mask" in w for w in plan["warnings"])  # the draft backend: holdout only
