import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cinescale_post.ops.blur import (blur_kernel_size, gaussian_blur_3d, gaussian_blur_3d_separable,
                                     gaussian_blur_spatial, gaussian_kernel_3d, gaussian_taps)


def test_taps_match_reference_values():
    assert gaussian_taps(3).tolist() == pytest.approx([0.274, 0.452, 0.274], abs=1e-3)
    assert gaussian_taps(7).tolist() == pytest.approx([0.0044, 0.054, 0.242, 0.399, 0.242, 0.054, 0.0044],
                                                      abs=1e-3)
    k = gaussian_kernel_3d(5, 1.3)
    assert k.shape == (5, 5, 5) and float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    g = [math.exp(-((i - 2) ** 2) / (2 * 1.3**2)) for i in range(5)]
    s = sum(g)
    assert float(k[1, 2, 4]) == pytest.approx(g[1] * g[2] * g[4] / s**3, rel=1e-5)


def test_kernel_sizes():
    assert [blur_kernel_size(s, s) for s in (1, 2, 4, 8)] == [1, 3, 7, 15]
    assert blur_kernel_size(2, 3) == 5


def _naive(x, k, sigma, axes):
    """Direct sum over the neighbourhood along ``axes`` with zero padding."""
    g = gaussian_taps(k, sigma, dtype=torch.float64)
    b, h, w, c = x.shape
    out = torch.zeros_like(x, dtype=torch.float64)
    r = k // 2
    rng = [range(-r, r + 1) if a in axes else range(0, 1) for a in (1, 2, 3)]
    for i, j, l in itertools.product(range(h), range(w), range(c)):
        acc = torch.zeros(b, dtype=torch.float64)
        for di, dj, dl in itertools.product(*rng):
            ii, jj, ll = i + di, j + dj, l + dl
            if 0 <= ii < h and 0 <= jj < w and 0 <= ll < c:
                wgt = (g[di + r] if 1 in axes else 1) * (g[dj + r] if 2 in axes else 1) * (g[dl + r] if 3 in axes else 1)
                acc += wgt * x[:, ii, jj, ll].double()
        out[:, i, j, l] = acc
    return out


def test_3d_blur_equals_naive_formula_including_feature_axis():
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur_3d(x, 3)
    assert torch.allclose(out.double(), _naive(x, 3, 1.0, (1, 2, 3)), atol=1e-6)
    # the reference's own layout: conv3d on (1, B, h, w, C) with groups=B
    kern = gaussian_kernel_3d(3)[None, None].repeat(2, 1, 1, 1, 1)
    ref = F.conv3d(x.unsqueeze(0), kern, padding=1, groups=2)[0]
    assert torch.allclose(out, ref, atol=1e-6)


def test_separable_equals_3d_and_spatial_is_different():
    x = torch.randn(2, 9, 8, 10, generator=torch.Generator().manual_seed(1))
    a = gaussian_blur_3d(x, 5)
    assert torch.allclose(gaussian_blur_3d_separable(x, 5), a, atol=1e-5)
    sp = gaussian_blur_spatial(x, 3)
    assert torch.allclose(sp.double(), _naive(x, 3, 1.0, (1, 2)), atol=1e-6)
    assert not torch.allclose(sp, gaussian_blur_3d(x, 3), atol=1e-3)


def test_bad_inputs():
    with pytest.raises(ValueError):
        gaussian_taps(4)
    with pytest.raises(ValueError):
        gaussian_blur_3d(torch.zeros(2, 3, 4), 3)
