"""The detail mask is read as the reference reads it (issue 25 item 6):
FreeScale imgen's ``process_image_to_bitensor`` opens the mask with PIL,
``convert("L")``, and counts every non-zero grey pixel as detail."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from cinescale_post.render.loading import load_detail_mask  # noqa: E402


def test_the_mask_is_the_reference_grey_not_any_channel(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 3, (16, 24, 3), dtype=np.uint8)  # dark colours: many give grey 0
    rgb[:, :4] = (0, 0, 5)  # blue 5: grey 1 (detail)
    rgb[:, 4:8] = (0, 0, 4)  # blue 4: grey 0 (not detail), though a channel is non-zero
    rgb[:, 8:12] = (77, 77, 77)  # a grey band
    path = tmp_path / "mask.png"
    Image.fromarray(rgb, "RGB").save(path)
    reference = (np.asarray(Image.open(path).convert("L")) != 0).astype(np.float32)
    ours = load_detail_mask(str(path)).values[0, 0].numpy()
    assert np.array_equal(ours, reference)
    assert ours[:, :4].all() and not ours[:, 4:8].any() and ours[:, 8:12].all()
    assert (rgb.max(axis=-1) != 0).sum() > reference.sum()  # the old any-channel rule counted more


def test_a_soft_mask_weighs_by_the_same_grey(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, :2] = (255, 0, 0)
    path = tmp_path / "soft.png"
    Image.fromarray(rgb, "RGB").save(path)
    soft = load_detail_mask(str(path), soft=True).values[0, 0].numpy()
    assert np.allclose(soft[:, :2], np.asarray(Image.open(path).convert("L"))[:, :2] / 255.0)
