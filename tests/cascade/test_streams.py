"""Independent random streams per (seed, stage, purpose) (issue 12)."""

import itertools

import pytest
import torch

from cinescale_post.cascade.streams import (PURPOSES, Streams, stream_generator, stream_randn, stream_random,
                                            stream_seed)


def shared_positions(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many aligned values two draws share (flattened, over the shorter)."""
    a, b = a.reshape(-1), b.reshape(-1)
    n = min(a.numel(), b.numel())
    return int((a[:n] == b[:n]).sum())


def test_first_noise_keeps_the_plain_seed_as_the_reference():
    ref = torch.randn(1, 4, 8, 8, generator=torch.Generator("cpu").manual_seed(123))
    assert stream_seed(123, 0, "noise") == stream_seed(123, 0, "renoise") == 123
    assert torch.equal(stream_randn(123, 0, "noise", (1, 4, 8, 8)), ref)


def test_every_stream_is_distinct_and_reproducible():
    keys = [(s, st, p) for s in (0, 1, 123) for st in (0, 1, 2) for p in PURPOSES]
    # (0, "noise") and (0, "renoise") are one stream: stage 0 is either a base or a refine stage
    seeds = [stream_seed(*k) for k in keys if k[1:] != (0, "renoise")]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= x < 2 ** 63 for x in seeds)
    assert stream_seed(7, 1, "renoise") == stream_seed(7, 1, "renoise")
    with pytest.raises(ValueError, match="purpose"):
        stream_seed(7, 1, "misc")


def test_no_two_streams_share_values():
    draws = {(st, p): stream_randn(5, st, p, (1, 4, 16, 16)) for st in (0, 1) for p in ("noise", "renoise",
                                                                                       "posterior", "step")
             if (st, p) != (0, "renoise")}
    for (ka, a), (kb, b) in itertools.combinations(draws.items(), 2):
        assert shared_positions(a, b) == 0, (ka, kb)
    # the defect this replaces: two generators seeded alike repeat each other
    same = [torch.randn(64, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert shared_positions(*same) == 64


def test_streams_object_continues_each_stream_and_takes_seed_lists():
    s = Streams(9)
    g = s.generator(1, "renoise")
    assert s.generator(1, "renoise") is g and s.generator(1, "posterior") is not g
    first, second = torch.randn(8, generator=g), torch.randn(8, generator=g)
    fresh = stream_generator(9, 1, "renoise")
    assert torch.equal(first, torch.randn(8, generator=fresh)) and torch.equal(second, torch.randn(8, generator=fresh))
    assert not torch.equal(first, second)
    rows = Streams([3, 4]).generator(0, "posterior")
    assert isinstance(rows, list) and len(rows) == 2
    assert stream_random(9).randint(0, 10 ** 9) == stream_random(9).randint(0, 10 ** 9)
