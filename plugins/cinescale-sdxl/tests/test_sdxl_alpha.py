"""Alpha carried around the real SDXL backend (tiny random-weight model, which
clamps like every real backend), through the real CLI and entry point: a
ProRes 4444 plate with alpha rendered to EXR keeps an A channel that is the
source's alpha resampled with the picture's geometry -- the model never sees
it, so it is exactly what the draft engine gives -- while the RGB is the
model's (changed) picture, zero where the plate is fully transparent."""

from fractions import Fraction

import av
import numpy as np
from sdxl_testutil import render_exr

TINY = ["--set", "dtype=float32", "--set", "output.codec=exr", "--set", "output.width=128",
        "--set", "output.height=96", "--set", "output.options.pixel=float", "--set", "stages.0.steps=3",
        "--set", "stages.0.dilate_tau=2"]


def _plate(path, w=64, h=48):
    """Textured grey, straight colour; alpha 0 on the left quarter, a ramp, then 1."""
    g = np.random.default_rng(5)
    rgb = np.clip(0.5 + 0.1 * g.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
    a = np.tile(np.clip((np.arange(w) - w / 4) / (w / 2), 0, 1), (h, 1)).astype(np.float32)
    with av.open(str(path), "w") as out:
        s = out.add_stream("prores_ks", rate=24, options={"profile": "4444"})
        s.width, s.height, s.pix_fmt = w, h, "yuva444p10le"
        px = np.rint(np.concatenate([rgb, a[..., None]], -1) * 65535).astype(np.uint16)
        vf = av.VideoFrame.from_ndarray(px, format="rgba64le").reformat(format="yuva444p10le")
        vf.pts, vf.time_base = 0, Fraction(1, 24)
        for p in s.encode(vf):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    return a


def _render(src, out, *extra):
    return render_exr(src, out, *extra, channels="RGBA")


def test_alpha_survives_the_tiny_sdxl(tmp_path, tiny_model):
    a = _plate(tmp_path / "plate.mov")
    sdxl = _render(tmp_path / "plate.mov", tmp_path / "s" / "o.####.exr", "--preset", "sdxl-uhd-refine",
                   "--model", tiny_model, "--prompt", "a test", *TINY)
    draft = _render(tmp_path / "plate.mov", tmp_path / "d" / "o.####.exr", "--preset", "uhd-exr-draft",
                    "--set", "output.width=128", "--set", "output.height=96", "--set", "output.options.pixel=float")
    assert sdxl.shape == (96, 128, 4)
    np.testing.assert_array_equal(sdxl[..., 3], draft[..., 3])  # alpha never went through the model
    assert np.abs(sdxl[..., 3][:, 8:120] - np.repeat(np.repeat(a, 2, 0), 2, 1)[:, 8:120]).max() < 0.08
    assert np.abs(sdxl[..., :3] - draft[..., :3]).mean() > 0.01  # the model changed the picture
    transparent = draft[..., 3] == 0
    assert transparent.any() and float(np.abs(sdxl[..., :3][transparent]).max()) < 0.05  # premultiplied
