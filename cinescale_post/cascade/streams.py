"""Independent random streams, one per (seed, stage, purpose): the one place
every random draw of a render gets its generator from (issue 12).

Two draws of one render must never share values. Seeding two generators with
the same seed does exactly that (the first ``numel`` values of the second
tensor repeat the first), which is how the Wan cascade's re-noise once
repeated its base noise. Here every use gets its own seed,
``blake2b("seed:stage:purpose")``, so streams are independent whatever order
they are drawn in, and any one of them can be re-created alone.

The first noise tensor of a render keeps the plain seed: stage 0's noise,
``(0, "noise")`` (the base stage of a generation) or ``(0, "renoise")`` (the
first refine stage of a render, which has no base stage; never both in one
render), is ``torch.Generator("cpu").manual_seed(seed)``, the reference's own
generator (FreeScale's user generator, CineScale's stage-1 and
video-to-video CPU generator), so those pictures stay the reference's.

Purposes (:data:`PURPOSES`): ``noise`` (initial noise of a base stage),
``posterior`` (VAE posterior samples), ``renoise`` (the re-noise tensor of an
upscaled stage), ``step`` (stochastic scheduler steps), ``jitter`` (scale-fusion
window jitter, a ``random.Random``), ``fresh`` (noise where an optical flow is
occluded). Torch is imported only by the functions that return tensors or
generators.

>>> stream_seed(7, 0, "noise"), stream_seed(7, 0, "renoise")
(7, 7)
>>> stream_seed(7, 1, "renoise") != stream_seed(7, 0, "renoise") != stream_seed(7, 1, "posterior")
True
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Sequence

PURPOSES = ("noise", "posterior", "renoise", "step", "jitter", "fresh")
_MASK = (1 << 63) - 1


def stream_seed(seed: int, stage: int, purpose: str) -> int:
    """The 63-bit seed of the stream ``(seed, stage, purpose)``; stage 0's
    noise / re-noise stream is ``seed`` itself (reference bits, see module docstring)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random-stream purpose {purpose!r}; use one of: {', '.join(PURPOSES)}")
    seed, stage = int(seed), int(stage)
    if stage == 0 and purpose in ("noise", "renoise"):
        return seed & _MASK
    digest = hashlib.blake2b(f"cinescale:{seed}:{stage}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK


def stream_generator(seed: int, stage: int, purpose: str) -> Any:
    """A fresh CPU ``torch.Generator`` for the stream (device-independent bits;
    move what it draws afterwards)."""
    import torch

    return torch.Generator("cpu").manual_seed(stream_seed(seed, stage, purpose))


def stream_randn(seed: int, stage: int, purpose: str, shape: Sequence[int], dtype: Any = None) -> Any:
    """N(0, 1) noise of ``shape`` from the start of the stream, drawn in
    float32 on the CPU and then cast to ``dtype`` (default float32)."""
    import torch

    t = torch.randn(tuple(int(s) for s in shape), generator=stream_generator(seed, stage, purpose),
                    dtype=torch.float32)
    return t if dtype is None else t.to(dtype)


def stream_random(seed: int, stage: int = 0, purpose: str = "jitter") -> random.Random:
    """A ``random.Random`` for the stream (window jitter draws ``randint``)."""
    return random.Random(stream_seed(seed, stage, purpose))


class Streams:
    """Lazily created generators of one render's streams, one per (stage,
    purpose), so successive draws of a stream continue it. ``seed`` may be a
    sequence (a batch of frames each with its own seed): :meth:`generator`
    then returns one generator per row (as diffusers' ``randn_tensor`` takes)."""

    def __init__(self, seed: int | Sequence[int]) -> None:
        self.seed = seed
        self._gens: dict[tuple[int, str], Any] = {}

    def generator(self, stage: int, purpose: str) -> Any:
        key = (int(stage), purpose)
        if key not in self._gens:
            if isinstance(self.seed, (list, tuple)):
                self._gens[key] = [stream_generator(s, stage, purpose) for s in self.seed]
            else:
                self._gens[key] = stream_generator(self.seed, stage, purpose)
        return self._gens[key]


__all__ = ["PURPOSES", "Streams", "stream_generator", "stream_randn", "stream_random", "stream_seed"]
