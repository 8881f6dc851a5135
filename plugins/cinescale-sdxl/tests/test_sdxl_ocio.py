"""OCIO mode through the real SDXL backend (tiny random-weight model, which
clamps its output to [0, 1] like every real backend): an ACEScg EXR plate's
highlights (4, 16, 100), negatives and out-of-gamut colours come back as the
plate had them, within half-float precision, while mid-grey carries the
model's change. Through the real CLI, entry point and the shipped
``sdxl-uhd-refine-aces`` preset (ACEScg EXR in and out)."""

import json
import subprocess
import sys

import numpy as np
import OpenEXR

HALF = 2.0 ** -11
TINY = ["--set", "dtype=float32", "--set", "output.codec=exr", "--set", "output.width=128",
        "--set", "output.height=96", "--set", "output.options.pixel=half", "--set", "stages.0.steps=3",
        "--set", "stages.0.dilate_tau=2"]
# (rows, cols) of 16x16 source patches, and the ACEScg value each holds
PATCHES = {"4": ((0, 16), (0, 16), 4.0), "16": ((0, 16), (24, 40), 16.0), "100": ((0, 16), (48, 64), 100.0),
           "negative": ((32, 48), (0, 16), -0.5), "out_of_gamut": ((32, 48), (48, 64), (0.6, 0.02, 0.01))}


def _plate(path):
    g = np.random.default_rng(3)
    rgb = 0.18 + 0.03 * g.standard_normal((48, 64, 3))  # textured mid-grey
    for (r0, r1), (c0, c1), v in PATCHES.values():
        rgb[r0:r1, c0:c1] = v
    half = rgb.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"RGB": half}) as f:
        f.write(str(path))
    return half.astype(np.float32)


def _render(src, out, model, *extra, preset="sdxl-uhd-refine"):
    r = subprocess.run([sys.executable, "-m", "cinescale_post", "render", str(src), "-o", str(out),
                        "--preset", preset, "--model", model, "--prompt", "a test", "--progress", "none",
                        *TINY, *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with OpenEXR.File(str(out).replace("####", "1001")) as f:
        hdr = dict(f.header())
        px = f.channels()["RGB"].pixels.astype(np.float32)
    return px, hdr


def test_aces_plate_survives_the_tiny_sdxl(tmp_path, tiny_model):
    plate = _plate(tmp_path / "in" / "plate.1001.exr")
    src = tmp_path / "in" / "plate.####.exr"
    out, hdr = _render(src, tmp_path / "ocio" / "o.####.exr", tiny_model, preset="sdxl-uhd-refine-aces")
    assert out.shape == (96, 128, 3)
    for name, ((r0, r1), (c0, c1), v) in PATCHES.items():
        inner = out[2 * r0 + 3: 2 * r1 - 3, 2 * c0 + 3: 2 * c1 - 3]  # away from the bilinear edge
        want = np.broadcast_to(np.float32(plate[r0 + 4, c0 + 4]), inner.shape)
        rel = np.abs(inner - want) / np.maximum(np.abs(want), 1e-3)
        assert rel.max() <= HALF, (name, v, float(rel.max()))
    grey = out[52:92, 36:92]  # source rows 26..46, cols 18..46: textured mid-grey only
    src_grey = np.repeat(np.repeat(plate[26:46, 18:46], 2, 0), 2, 1)
    assert np.abs(grey - src_grey).mean() > 0.01  # the model changed it
    assert 0.05 < float(grey.mean()) < 0.6  # and it is still about mid-grey, in ACEScg
    assert hdr["colorspace"] == "ACEScg"
    assert abs(hdr["chromaticities"][0] - 0.713) < 1e-6 and abs(hdr["chromaticities"][6] - 0.32168) < 1e-6
    manifest = json.loads((tmp_path / "ocio" / "o.manifest.json").read_text())
    chain = manifest["plan"]["colour"]["chain"]
    assert chain[0].startswith("ACEScg -> Linear Rec.709 (sRGB)") and "blend" in chain[4]

    # The same plate in video mode: the backend's clamp takes every highlight to 1.0.
    video, _ = _render(src, tmp_path / "video" / "o.####.exr", tiny_model)
    assert float(video.max()) <= 1.0 + HALF and float(out.max()) > 99.0


def test_sd_primaries_converted_after_the_tiny_sdxl_clamps(tmp_path, tiny_model):
    """SMPTE-C (NTSC) primaries to BT.709 happen on the model's clamped output:
    the bt709 render is exactly the conversion of the source-primaries render
    (same seeds, same model output), within half-float precision."""
    from fractions import Fraction

    from cinescale_post.contracts.media import Colour
    from cinescale_post.media.output_colour import convert
    from cinescale_post.testing import make_clip

    def saturated(_, size):
        w, h = size
        rgb = np.full((h, w, 3), 0.5, np.float32)
        rgb[:, : w // 2] = (0.1, 0.85, 0.1)
        return rgb

    src = make_clip(tmp_path / "ntsc.mov", frames=1, size=(64, 48), rate=Fraction(30000, 1001),
                    codec="prores_ks", profile="hq", colour="bt601", content=saturated)
    kept, hdr_kept = _render(src, tmp_path / "kept" / "o.####.exr", tiny_model, "--set", "output.primaries=source")
    conv, hdr_conv = _render(src, tmp_path / "conv" / "o.####.exr", tiny_model, "--set", "output.primaries=bt709")
    assert float(kept.max()) <= 1.0 + HALF  # what the clamping model gave
    want = convert(kept, Colour(6, 6, 6, 1), Colour(1, 1, 1, 1))
    assert np.abs(conv - want).max() <= 4 * HALF * max(1.0, float(np.abs(want).max()))
    assert np.abs(conv - kept).max() > 0.05  # the conversion is visible
    assert abs(hdr_conv["chromaticities"][2] - 0.30) < 1e-6  # BT.709 green x
    assert abs(hdr_kept["chromaticities"][2] - 0.31) < 1e-6  # SMPTE-C green x
