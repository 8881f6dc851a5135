"""What one cascade run draws from and hands between its stages: the random
sources of a run (:class:`RandomSources`) and a stage's result (:class:`StageResult`).
Torch is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch


@dataclass
class RandomSources:
    """Every random source of one cascade run.

    ``generator``: torch generator for the base noise, VAE posterior samples,
    re-noise tensors and stochastic scheduler steps, drawn in the reference
    order (per stage: posterior sample, then re-noise). ``jitter``: an object
    with ``randint(lo, hi)`` for window jitter (``random.Random``; the Python
    ``random`` module reproduces the reference's global draws), or None: off.
    ``posterior``: "sample" (reference) or "mean". ``renoise``: optional
    per-stage re-noise tensors (index = stage index; None entries draw).
    ``base_noise``: optional initial noise of the base stage.
    """

    generator: Any = None
    jitter: Any = None
    posterior: str = "sample"
    renoise: Sequence[Any] | None = None
    base_noise: Any = None
    streams: Any = None  # cascade.streams.Streams: one generator per (stage, purpose), from from_seed

    @classmethod
    def from_seed(cls, seed: int, *, jitter: bool = True, posterior: str = "sample") -> "RandomSources":
        """Independent CPU streams per (stage, purpose) derived from ``seed``
        (``cascade.streams``: device-independent bits, no two draws share
        values); ``generator`` is stage 0's noise stream, the plain seed."""
        from cinescale_post.cascade.streams import Streams, stream_random

        # Every draw from its own stream (issue 12); stage 0's noise keeps the plain seed.
        st = Streams(int(seed))
        return cls(generator=st.generator(0, "noise"), jitter=stream_random(int(seed)) if jitter else None,
                   posterior=posterior, streams=st)

    @classmethod
    def controlled(cls, *, renoise: Sequence[Any] | None = None, base_noise: Any = None,
                   seed: int = 0) -> "RandomSources":
        """Controlled mode: given re-noise tensors, posterior mean, no jitter."""
        return cls(generator=torch.Generator("cpu").manual_seed(int(seed)), jitter=None, posterior="mean",
                   renoise=renoise, base_noise=base_noise)

    def generator_for(self, stage: int, purpose: str) -> Any:
        """The generator of ``(stage, purpose)`` (``cascade.streams``) when the
        sources come from a seed; otherwise the one ``generator`` (injected
        generators, controlled mode: unchanged)."""
        if self.streams is not None:
            return self.streams.generator(stage, purpose)
        return self.generator

    def renoise_for(self, index: int) -> Any:
        if self.renoise is not None and index < len(self.renoise):
            return self.renoise[index]
        return None


@dataclass
class StageResult:
    """What a stage hands to the next: a latent, pixels in [-1, 1], or both."""

    size: tuple[int, int]
    latent: Any = None
    pixels: Any = None
    stage: int = -1
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageConditions:
    """Conditioning per stage, where stages have prompts of their own
    (``stages.N.prompt``): stage ``i`` is conditioned on ``by_stage[i]``,
    every other stage on ``base``. The ladder takes it where it takes one
    conditioning for all stages."""

    base: Any
    by_stage: Mapping[int, Any]

    def for_stage(self, index: int) -> Any:
        return self.by_stage.get(index, self.base)


def stage_condition(cond: Any, index: int) -> Any:
    """The conditioning of stage ``index``: ``cond`` itself, or its stage's."""
    return cond.for_stage(index) if isinstance(cond, StageConditions) else cond


def randn(shape: Sequence[int], generator: Any, device: Any, dtype: Any) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device, then moved (like
    diffusers ``randn_tensor``), so CPU generators give the same bits on any device."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=gdev, dtype=dtype).to(device)


__all__ = ["RandomSources", "StageConditions", "StageResult", "randn", "stage_condition"]
