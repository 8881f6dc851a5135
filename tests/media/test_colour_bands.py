"""The banded, in-place Y'CbCr -> R'G'B' decode (issue 11 benchmark work) gives
bit for bit the values of the whole-frame formula it replaced, for every
subsampling, depth, range, matrix and odd size, and can write into a buffer."""

from __future__ import annotations

import numpy as np
import pytest

import cinescale_post.media.colour as col


def _whole_frame(y, cb, cr, *, matrix, range, bits):
    """The formula before banding (kept here as the reference)."""
    kr, kb = col._KR_KB[matrix]
    kg = 1.0 - kr - kb
    h, w = y.shape
    yo, ys, co, cs = col._scales(bits, range)
    yv = (y.astype(np.float32) - yo) / ys
    pb = col._upsample((cb.astype(np.float32) - co) / cs, h, w)
    pr = col._upsample((cr.astype(np.float32) - co) / cs, h, w)
    r = yv + 2.0 * (1.0 - kr) * pr
    b = yv + 2.0 * (1.0 - kb) * pb
    g = (yv - kr * r - kb * b) / kg
    return np.stack([r, g, b], axis=-1).astype(np.float32)


@pytest.mark.parametrize("sub", ["444", "422", "420"])
@pytest.mark.parametrize("h, w", [(1, 1), (67, 131), (130, 66), (257, 2)])
@pytest.mark.parametrize("bits, rng, matrix", [(10, 1, 1), (8, 2, 6), (12, 1, 9), (16, 2, 5)])
def test_banded_decode_is_bit_identical(sub, h, w, bits, rng, matrix):
    g = np.random.default_rng(h * 1000 + w + bits)
    ch = -(-h // 2) if sub == "420" else h
    cw = w if sub == "444" else -(-w // 2)
    hi = (1 << bits) - 1
    y = g.integers(0, hi + 1, (h, w)).astype(np.uint16)
    cb = g.integers(0, hi + 1, (ch, cw)).astype(np.uint16)
    cr = g.integers(0, hi + 1, (ch, cw)).astype(np.uint16)
    want = _whole_frame(y, cb, cr, matrix=matrix, range=rng, bits=bits)
    got = col.ycbcr_to_rgb(y, cb, cr, matrix=matrix, range=rng, bits=bits)
    assert got.dtype == np.float32 and got.shape == (h, w, 3)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    buf = np.full((h, w, 3), np.nan, np.float32)
    again = col.ycbcr_to_rgb(y, cb, cr, matrix=matrix, range=rng, bits=bits, out=buf)
    assert again is buf and np.array_equal(buf.view(np.uint32), want.view(np.uint32))


def test_full_hd_planes_and_a_wrong_buffer():
    g = np.random.default_rng(7)
    y = g.integers(64, 941, (1080, 1920)).astype(np.uint16)
    cb = g.integers(64, 961, (1080, 960)).astype(np.uint16)
    cr = g.integers(64, 961, (1080, 960)).astype(np.uint16)
    want = _whole_frame(y, cb, cr, matrix=1, range=1, bits=10)
    wrong = np.zeros((1080, 1920, 3), np.float64)  # not float32: a fresh array is returned instead
    got = col.ycbcr_to_rgb(y, cb, cr, matrix=1, range=1, bits=10, out=wrong)
    assert got is not wrong and np.array_equal(got.view(np.uint32), want.view(np.uint32))
