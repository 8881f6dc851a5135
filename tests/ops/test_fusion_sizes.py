"""Scale-fusion windows at sizes that are not multiples of 1024 (issue 12).

The reference reshapes the tokens with ``h_tok = int(sqrt(N * ratio))``,
which fails when the token grid is not exactly ``ratio``-shaped (3840x2160:
270x480 latent, 135x240 and 68x120 token grids). We take the true token grid
(``token_grid``) and the reference's window formula extrapolated with the
integer scale numbers ``(H // 1024, W // 1024)`` (docs/method.md). These
tests hold that layout to two properties at the UHD and 4K sizes, for every
jitter the reference can draw:

* complete: every token lies in at least one window (the local branch of
  ``local_window_attention`` with an identity attention returns its input
  exactly, where an uncovered token would come back 0);
* seam-free: every two neighbouring tokens share a window, so the local
  branch never switches between disjoint windows from one token to the next.
"""

import math
import random

import pytest
import torch

from cinescale_post.ops.fusion import get_views, local_window_attention, token_grid, window_geometry

SIZES = [(3840, 2160), (2176, 3840), (3840, 2176)]  # (width, height): UHD, 4K portrait, Wan 4K
SDXL_LEVELS = (1, 2)  # down_blocks.1/up_blocks.1 and down_blocks.2/mid/up_blocks.0 carry attention


def _grids(width, height):
    lat = (height // 8, width // 8)
    out = []
    for level in SDXL_LEVELS:
        gh, gw = lat
        for _ in range(level):
            gh, gw = math.ceil(gh / 2), math.ceil(gw / 2)
        assert token_grid(gh * gw, lat) == (gh, gw)
        out.append((gh, gw))
    return out


def _jitters():
    yield "none", None
    yield "low", lambda lo, hi: lo
    yield "high", lambda lo, hi: hi
    for seed in range(6):
        yield f"random{seed}", random.Random(seed).randint


def _check_complete_and_seam_free(grid, views, pad):
    gh, gw = grid
    rh, rw = pad
    real = [(max(h0 - rh, 0), min(h1 - rh, gh), max(w0 - rw, 0), min(w1 - rw, gw)) for h0, h1, w0, w1 in views]
    cover = torch.zeros(gh, gw, dtype=torch.int32)
    for h0, h1, w0, w1 in real:
        cover[h0:h1, w0:w1] += 1
    assert int(cover.min()) >= 1, f"{int((cover == 0).sum())} tokens of {grid} are in no window"
    # seam-free: neighbours (vertical and horizontal) share at least one window
    share_v = torch.zeros(gh - 1, gw, dtype=torch.bool)
    share_h = torch.zeros(gh, gw - 1, dtype=torch.bool)
    for h0, h1, w0, w1 in real:
        if h1 - h0 >= 2:
            share_v[h0:h1 - 1, w0:w1] = True
        if w1 - w0 >= 2:
            share_h[h0:h1, w0:w1 - 1] = True
    assert bool(share_v.all()) and bool(share_h.all()), f"seams in {grid}"


@pytest.mark.parametrize("width, height", SIZES)
def test_windows_cover_every_token_without_seams(width, height):
    for grid in _grids(width, height):
        geom = window_geometry(grid, (height, width))
        assert geom.window[0] < grid[0] and geom.window[1] < grid[1]  # really windowed
        assert geom.stride[0] * 2 <= geom.window[0] + 1 and geom.stride[1] * 2 <= geom.window[1] + 1
        for name, fn in _jitters():
            views = get_views(geom, fn)
            assert len(views) == geom.counts[0] * geom.counts[1], name
            _check_complete_and_seam_free(grid, views, geom.jitter)


@pytest.mark.parametrize("width, height", SIZES)
def test_local_branch_reproduces_its_input_everywhere(width, height):
    """With an identity attention the window average is the input itself
    wherever a window lies; an uncovered token would come back as 0."""
    g = torch.Generator().manual_seed(0)
    for grid in _grids(width, height):
        geom = window_geometry(grid, (height, width))
        x = torch.rand(1, grid[0], grid[1], 2, generator=g) + 0.5
        for name, fn in (("none", None), ("random", random.Random(1).randint)):
            views = get_views(geom, fn)
            # zero-padded border windows mix in padding zeros only where the identity keeps them apart
            out = local_window_attention(x, views, geom.jitter, lambda t: t)
            assert torch.allclose(out, x, atol=1e-6), (grid, name)


def test_uhd_geometry_is_the_extrapolated_reference_formula():
    """3840x2160: scale numbers (2, 3), ratio 2/3, sub-window 85x128 pixels-
    per-token-scaled: level 135x240 -> windows 44x67, stride 22x33, jitter 5x8."""
    geom = window_geometry((135, 240), (2160, 3840))
    assert geom.scale == (2, 3)
    assert (geom.window, geom.stride, geom.jitter) == ((44, 67), (22, 33), (5, 8))
    assert geom.counts == (6, 7) and geom.kernel == 5
    deep = window_geometry((68, 120), (2160, 3840))
    assert (deep.window, deep.stride, deep.counts) == ((22, 34), (11, 17), (6, 7))


def test_the_checks_catch_gaps_and_seams():
    """The two properties are not vacuous: abutting windows (stride = window)
    have seams, and a stride beyond the window leaves gaps."""
    from dataclasses import replace

    geom = window_geometry((135, 240), (2160, 3840))
    abutting = replace(geom, stride=geom.window, jitter=(0, 0))
    with pytest.raises(AssertionError, match="seams"):
        _check_complete_and_seam_free(geom.grid, get_views(abutting), (0, 0))
    gappy = replace(geom, stride=(geom.window[0] + 2, geom.window[1] + 2), jitter=(0, 0))
    with pytest.raises(AssertionError, match="in no window"):
        _check_complete_and_seam_free(geom.grid, get_views(gappy), (0, 0))
