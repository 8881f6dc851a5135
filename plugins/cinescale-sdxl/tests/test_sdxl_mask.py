"""The per-pixel detail mask of the cosine blend, from a preset option."""

import cv2
import numpy as np
import pytest
from sdxl_testutil import driver, frames_of, make_plan, seed_for, still

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.engine import WindowJob

STAGES = ({"size": "output", "steps": 4, "restart_step": 1, "dilate_tau": 2, "guidance": 3.0,
           "cosine_scale": 2.0, "cosine_scale_bg": 0.5},)


def _mask(path, left_white: bool, right_white: bool):
    m = np.zeros((32, 64), np.uint8)
    m[:, :32] = 255 if left_white else 0
    m[:, 32:] = 255 if right_white else 0
    cv2.imwrite(str(path), m)
    return str(path)


def _render(tiny_model, mask_path):
    b = driver()
    opts = {"anchor_lowfreq": 0.0, "posterior": "mean"}
    if mask_path:
        opts["detail_mask"] = mask_path
    b.load(make_plan(tiny_model, stages=STAGES, mode="render", size=(128, 128), options=opts))
    return b.render(WindowJob(frames=frames_of([still(3)]), size=(128, 128), seed_for=seed_for))[0]


def test_detail_mask_changes_only_where_it_says(tmp_path, tiny_model):
    plain = _render(tiny_model, None)
    white = _render(tiny_model, _mask(tmp_path / "w.png", True, True))
    half = _render(tiny_model, _mask(tmp_path / "h.png", True, False))
    assert np.array_equal(plain, white)  # all-detail mask = the stage's cosine_scale everywhere
    assert not np.array_equal(plain, half)
    diff = np.abs(half - plain).mean(axis=(0, 2))
    assert diff[80:].mean() > 4 * diff[:48].mean()  # the change sits on the masked-off (right) half


def test_missing_mask_file_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match="detail_mask"):
        driver().validate(stages=STAGES, options={"detail_mask": str(tmp_path / "none.png")},
                               size=(128, 128), source=None)


def _band(path, left: int, right: int):
    m = np.zeros((32, 64), np.uint8)
    m[:, :32], m[:, 32:] = left, right
    cv2.imwrite(str(path), m)
    return str(path)


def _render_opts(tiny_model, **opts):
    b = driver()
    b.load(make_plan(tiny_model, stages=STAGES, mode="render", size=(128, 128),
                     options={"anchor_lowfreq": 0.0, "posterior": "mean", **opts}))
    return b.render(WindowJob(frames=frames_of([still(3)]), size=(128, 128), seed_for=seed_for))[0]


def test_a_grey_band_is_detail_as_in_the_reference(tmp_path, tiny_model):
    """Reference (FreeScale imgen): any non-zero mask value marks detail; a
    0.3 grey band (77/255) is the same as white there, not background."""
    grey = _render_opts(tiny_model, detail_mask=_band(tmp_path / "g.png", 77, 0))
    white = _render_opts(tiny_model, detail_mask=_band(tmp_path / "w.png", 255, 0))
    assert np.array_equal(grey, white)


def test_soft_mask_weighs_the_exponents_by_grey_level(tmp_path, tiny_model):
    binary = _render_opts(tiny_model, detail_mask=_band(tmp_path / "w.png", 255, 0))
    soft_white = _render_opts(tiny_model, detail_mask=_band(tmp_path / "w.png", 255, 0), detail_mask_soft=True)
    soft_grey = _render_opts(tiny_model, detail_mask=_band(tmp_path / "g.png", 128, 0), detail_mask_soft=True)
    assert np.array_equal(binary, soft_white)  # 0/1 masks: both rules agree
    assert not np.array_equal(soft_grey, binary)
    d = np.abs(soft_grey - binary).mean(axis=(0, 2))
    assert d[:48].mean() > 1.5 * d[80:].mean()  # the change sits on the grey (left) half
