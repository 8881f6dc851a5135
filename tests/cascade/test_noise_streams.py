"""No two random draws of one render share values (issue 12, defect 1).

The Wan cascade's ``noise = "reference"`` policy once drew the base noise and
every stage's re-noise from CPU generators all seeded with the window seed,
so the first ``numel(base)`` values of the re-noise were the base noise.
"""

import itertools
from dataclasses import dataclass

import pytest
import torch

from cinescale_post.cascade.streams import stream_randn


@dataclass
class _Stage:
    index: int
    base: bool
    size: tuple


class _VideoModel:
    """Just what a video noise policy asks of a model: latent shapes and dtype."""

    dtype = torch.float32

    def latent_shape(self, size, batch=1, frames=1):
        return (batch, 4, frames, size[1] // 8, size[0] // 8)


def _draws(rng):
    out = [("base", rng.base_noise)] if rng.base_noise is not None else []
    out += [(f"renoise.{i}", t) for i, t in enumerate(rng.renoise or ()) if t is not None]
    out.append(("posterior", torch.randn(4096, generator=rng.generator)))
    return out


def _shared(a, b):
    a, b = a.reshape(-1), b.reshape(-1)
    n = min(a.numel(), b.numel())
    return int((a[:n] == b[:n]).sum())


@pytest.mark.parametrize("mode", ["generate", "render"])
def test_reference_policy_draws_never_share_values(mode):
    from cinescale_post.cascade.noise import POLICIES

    gen = mode == "generate"
    stages = [_Stage(0, gen, (64, 64)), _Stage(1, False, (128, 128)), _Stage(2, False, (256, 256))]
    rng = POLICIES["reference"].draw(_VideoModel(), 1234, stages, 3, "sample")
    draws = _draws(rng)
    assert len(draws) == 4
    for (na, a), (nb, b) in itertools.combinations(draws, 2):
        assert _shared(a, b) == 0, f"{na} and {nb} share values"
    # stage 0's tensor is still the reference's: a CPU generator seeded with the seed, float32
    first = draws[0][1]
    ref = torch.randn(tuple(first.shape), generator=torch.Generator("cpu").manual_seed(1234))
    assert torch.equal(first, ref)
    assert torch.equal(rng.renoise[1], stream_randn(1234, 1, "renoise", first.shape[:2] + (3, 16, 16)))


def test_core_random_sources_give_each_stage_and_purpose_its_own_stream():
    """The core loop draws base noise, posterior samples, re-noise and
    scheduler-step noise through ``generator_for(stage, purpose)``: from a
    seed, each is its own stream and no two share values; injected
    generators (controlled mode) are used unchanged."""
    from cinescale_post.cascade.sources import RandomSources

    rng = RandomSources.from_seed(77)
    draws = {}
    for stage in (0, 1, 2):
        for purpose in ("noise", "posterior", "renoise", "step"):
            if (stage, purpose) == (0, "renoise"):  # stage 0 is a base or a refine stage, never both
                continue
            draws[(stage, purpose)] = torch.randn(1, 4, 16, 16, generator=rng.generator_for(stage, purpose))
    for (ka, a), (kb, b) in itertools.combinations(draws.items(), 2):
        assert _shared(a, b) == 0, (ka, kb)
    ref = torch.randn(1, 4, 16, 16, generator=torch.Generator("cpu").manual_seed(77))
    assert torch.equal(draws[(0, "noise")], ref)  # the reference's base noise
    ctl = RandomSources.controlled(seed=3)
    assert ctl.generator_for(1, "renoise") is ctl.generator is ctl.generator_for(0, "posterior")


class _ImageModel:
    device = torch.device("cpu")
    dtype = torch.float32

    def latent_shape(self, size, batch=1, frames=None):
        return (batch, 4, size[1] // 8, size[0] // 8)


@pytest.mark.parametrize("noise", ["frame", "shot", "flow"])
def test_temporal_path_fields_never_share_values_with_the_frames_generator(noise):
    """Audit of the image layout's temporal path (flow noise, cross-frame): the
    re-noise fields come from ``derive_seed(seed, "renoise"/"fresh")`` streams,
    the posterior and scheduler steps from the frame seed's generator; no two
    of them share values, and no two stages' fields do."""
    import numpy as np

    from cinescale_post.cascade.noise import image_fields
    from cinescale_post.contracts.media import Frame

    frames = [Frame(number=1001 + i, index=i, rgb=np.full((32, 32, 3), 0.1 * i, np.float32)) for i in range(3)]
    stages = [_Stage(0, False, (64, 64)), _Stage(1, False, (128, 128))]

    def seed_for(n, tile=0):
        return 1000 + 31 * n + tile

    fields, _ = image_fields(_ImageModel(), frames, seed_for, stages, 1001, noise=noise, key_every=2, flow="dis",
                             flow_warp="bilinear")
    for f, per_stage in zip(frames, fields):
        post = torch.randn(1 << 16, generator=torch.Generator("cpu").manual_seed(seed_for(f.number)))
        key = torch.randn(1 << 16, generator=torch.Generator("cpu").manual_seed(seed_for(1001)))
        for s, t in enumerate(per_stage):
            assert _shared(t, post) == 0 and _shared(t, key) == 0, (f.number, s)
        assert _shared(per_stage[0], per_stage[1]) == 0
