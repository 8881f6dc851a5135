"""Mattes through the tiny SDXL (random weights: wiring, not quality), by the
real CLI and entry point: holdout leaves the half outside the matte equal to
the draft render within float error while the other half changes, and a
matte in detail mode reaches the cascade exactly as the still detail mask
of the same image does."""


import cv2
import numpy as np
from sdxl_testutil import render_exr

from cinescale_post.testing import make_clip

TINY = ["--set", "dtype=float32", "--set", "output.codec=exr", "--set", "output.width=128",
        "--set", "output.height=96", "--set", "output.options.pixel=float", "--set", "stages.0.steps=3",
        "--set", "stages.0.dilate_tau=2", "--set", "stages.0.cosine_scale_bg=0.5"]


def test_holdout_and_detail_mattes_through_the_tiny_sdxl(tmp_path, tiny_model):
    plate = make_clip(tmp_path / "plate.mov", frames=1, size=(64, 48), codec="prores_ks", profile="hq",
                      content="gradient")
    half = np.zeros((96, 128, 3), np.uint8)
    half[:, 64:] = 255
    cv2.imwrite(str(tmp_path / "half.png"), half)
    sdxl = ["--preset", "sdxl-uhd-refine", "--model", tiny_model, "--prompt", "a test", *TINY]
    draft = render_exr(plate, tmp_path / "d" / "o.####.exr", "--preset", "uhd-exr-draft", "--set", "output.width=128",
                    "--set", "output.height=96", "--set", "output.options.pixel=float")
    held = render_exr(plate, tmp_path / "h" / "o.####.exr", *sdxl, "--matte", str(tmp_path / "half.png"),
                   "--set", "matte.mode=holdout")
    free = render_exr(plate, tmp_path / "f" / "o.####.exr", *sdxl)
    np.testing.assert_allclose(held[:, :64], draft[:, :64], atol=1e-6)  # outside: the draft
    np.testing.assert_allclose(held[:, 64:], free[:, 64:], atol=1e-6)  # inside: the model's
    assert np.abs(held[:, 64:] - draft[:, 64:]).mean() > 0.01  # which changed the plate (the tiny SDXL clamps)
    detail = render_exr(plate, tmp_path / "m" / "o.####.exr", *sdxl, "--matte", str(tmp_path / "half.png"),
                     "--set", "matte.mode=detail")
    still = render_exr(plate, tmp_path / "s" / "o.####.exr", *sdxl, "--set",
                    f"backend_options.detail_mask={tmp_path / 'half.png'}")
    np.testing.assert_array_equal(detail, still)  # the matte is the cascade's detail mask
    assert not np.array_equal(detail, free)  # and it changes the cascade (cosine_scale_bg 0.5 outside)
