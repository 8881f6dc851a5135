"""The draft backend resizes into an earlier output only when nothing else
holds it (issue 11 benchmark work): an image the pipeline still keeps is never
overwritten, and reused buffers give the same values as fresh ones."""

from __future__ import annotations

import numpy as np

from cinescale_post.builtin.draft import DraftBackend
from cinescale_post.builtin.upscalers import LANCZOS
from cinescale_post.contracts.media import Frame
from cinescale_post.contracts.engine import WindowJob


def _job(i: int) -> WindowJob:
    rgb = np.random.default_rng(i).uniform(0, 1, (24, 32, 3)).astype(np.float32)
    return WindowJob(frames=[Frame(number=1001 + i, index=i, rgb=rgb)], size=(64, 48), seed_for=lambda *a: 0)


def _backend() -> DraftBackend:
    b = DraftBackend()
    b._upscaler = LANCZOS
    return b


def test_a_held_output_is_never_overwritten_and_values_match_fresh_resizes():
    b = _backend()
    kept = []
    for i in range(4):
        out = b.render(_job(i))[0]
        kept.append((out, out.copy()))
    for i, (out, snapshot) in enumerate(kept):
        assert np.array_equal(out, snapshot), f"output {i} was overwritten while held"
        assert np.array_equal(out, LANCZOS(_job(i).frames[0].rgb, (64, 48)))
    assert len({id(o) for o, _ in kept}) == 4


def test_a_dropped_output_is_reused_with_the_values_of_a_fresh_resize():
    b = _backend()
    first = b.render(_job(0))[0]
    address = first.__array_interface__["data"][0]
    del first
    second = b.render(_job(1))[0]
    assert second.__array_interface__["data"][0] == address  # the same buffer
    assert np.array_equal(second, LANCZOS(_job(1).frames[0].rgb, (64, 48)))
    view = second[:2]  # a view keeps its base alive: not reused
    del second
    third = b.render(_job(2))[0]
    assert third.__array_interface__["data"][0] != address
    assert np.array_equal(view, LANCZOS(_job(1).frames[0].rgb, (64, 48))[:2])
