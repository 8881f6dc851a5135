"""How a golden digest is compared (tests/golden.py): bit identity first,
then thumbnails within tolerance, never a pass on a real change."""

from __future__ import annotations

import numpy as np
import pytest

from . import golden as gd


def _entry(sha="a" * 64, frames=2, thumb=None, **extra):
    thumb = thumb if thumb is not None else [[0.5] * 12, [0.25] * 12]
    return {"sha256": sha, "frames": frames, "mean": 0.4, "thumb": thumb, **extra}


def test_equal_sha_or_a_listed_other_sha_passes():
    assert gd.difference(_entry(), _entry()) is None
    far = _entry(sha="b" * 64, thumb=[[9.0] * 12, [9.0] * 12])
    assert gd.difference(far, _entry(sha256_other=["b" * 64])) is None


def test_kernel_noise_passes_and_a_real_change_fails():
    noisy = _entry(sha="c" * 64, thumb=[[0.5 + 5e-6] * 12, [0.25] * 12])
    assert gd.difference(noisy, _entry()) is None
    changed = _entry(sha="c" * 64, thumb=[[0.5 + 3.5e-3] * 12, [0.25] * 12])
    assert "differs by up to 0.0035" in gd.difference(changed, _entry())
    assert "frames" in gd.difference(_entry(sha="c" * 64, frames=3), _entry())
    no_thumb = {k: v for k, v in _entry().items() if k != "thumb"}
    assert "no thumbnail" in gd.difference(_entry(sha="c" * 64), no_thumb)


def test_exact_mode_asks_for_bit_identity(monkeypatch):
    monkeypatch.setattr(gd, "EXACT", True)
    noisy = _entry(sha="c" * 64, thumb=[[0.5 + 5e-6] * 12, [0.25] * 12])
    assert "bit identity" in gd.difference(noisy, _entry())


def test_thumbnail_is_block_means_on_an_8x8_grid():
    frame = np.zeros((16, 24, 3))
    frame[:2, :3, 1] = 1.0  # exactly the top-left block's green
    t = gd.thumbnail(frame)
    assert len(t) == 8 * 8 * 3
    assert t[:3] == [0.0, 1.0, 0.0] and sum(t) == pytest.approx(1.0)


def test_save_and_load_round_trip(tmp_path):
    data = {"b": _entry(), "a": _entry(sha="d" * 64)}
    gd.save(tmp_path / "g.json", data)
    assert gd.load(tmp_path / "g.json") == data
    assert len((tmp_path / "g.json").read_text().splitlines()) == 4
