"""Noise policies of the render driver, as a registry (issue 7 and 13).

A policy decides where every random number of a window comes from. Image
layouts (frames refined one by one):

* ``shot`` — one re-noise field for every frame of the shot (seeded by the
  shot frame): static content stays still;
* ``frame`` — per-frame seeds: added detail changes every frame;
* ``flow`` — the shot's field carried along the source's optical flow from
  each key frame (``ops.temporal``), fresh noise where the flow is occluded.

Video layouts (a window denoised as a whole):

* ``reference`` — every noise tensor (base noise, each stage's re-noise) from
  its own CPU stream (``streams``: stage 0's from the plain window seed, as
  the CineScale scripts; later stages' from derived seeds), in float32;
* ``stream`` — one generator stream for every draw.

Adapters declare the policies they take (``Capabilities.noise``); the driver
looks them up here. Torch is imported when a policy runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class NoisePolicy:
    """``layout``: "image" or "video". ``explicit``: image policies whose
    re-noise fields are built per frame (:func:`image_fields`) instead of
    drawn by the loop. ``draw``: video policies, ``draw(model, seed, stages,
    frames, posterior) -> RandomSources``."""

    name: str
    layout: str
    explicit: bool = False
    draw: Callable[..., Any] | None = None
    description: str = ""


def _reference(model: Any, seed: int, stages: Sequence[Any], frames: int, posterior: str):
    from cinescale_post.cascade.sources import RandomSources
    from cinescale_post.cascade.streams import stream_generator, stream_randn

    # Each tensor from its own stream (issue 12): seeding every draw with the
    # window seed made the re-noise repeat the base noise value for value.
    # Stage 0's tensor keeps the plain seed (the reference's CPU generator).
    base = None
    renoise: list[Any] = []
    for s in stages:
        shape = model.latent_shape(s.size, frames=frames)
        eps = stream_randn(seed, s.index, "noise" if s.base else "renoise", shape)
        if s.base:
            base = eps.to(model.dtype)
            renoise.append(None)
        else:
            renoise.append(eps.to(model.dtype))
    return RandomSources(generator=stream_generator(seed, 0, "posterior"), jitter=None,
                         posterior=posterior, renoise=renoise, base_noise=base)


def _stream(model: Any, seed: int, stages: Sequence[Any], frames: int, posterior: str):
    from cinescale_post.cascade.sources import RandomSources

    return RandomSources.from_seed(seed, jitter=False, posterior=posterior)


POLICIES: dict[str, NoisePolicy] = {p.name: p for p in (
    NoisePolicy("shot", "image", description="one re-noise field for every frame of the shot"),
    NoisePolicy("frame", "image", description="per-frame seeds"),
    NoisePolicy("flow", "image", explicit=True, description="the shot's field warped along the source flow"),
    NoisePolicy("reference", "video", draw=_reference, description="fresh CPU generator per tensor (reference)"),
    NoisePolicy("stream", "video", draw=_stream, description="one generator stream for every draw"),
)}


def policy(name: str) -> NoisePolicy:
    return POLICIES[name]


def from_file(path: str, seed: int, stages: Sequence[Any]):
    """Controlled mode: ``base_noise`` / ``renoise.K`` tensors read from a
    safetensors file, posterior mean, no jitter."""
    import torch
    from safetensors.torch import load_file

    from cinescale_post.cascade.sources import RandomSources

    data = load_file(path)
    renoise = [data.get(f"renoise.{s.index}") for s in stages]
    return RandomSources(generator=torch.Generator("cpu").manual_seed(int(seed)), jitter=None,
                         posterior="mean", renoise=renoise, base_noise=data.get("base_noise"))


def image_fields(model: Any, frames: Sequence[Any], seed_for: Callable[..., int], stages: Sequence[Any],
                 shot_key: int, *, noise: str, key_every: int, flow: str, flow_warp: str,
                 warn: Callable[[list, int], None] | None = None) -> tuple[list, list[int]]:
    """Re-noise fields of every frame of ``frames`` (lookbehind + window),
    one (1, C, h, w) tensor per stage, and the position of each frame's key
    frame in ``frames``.

    Fields are drawn from CPU generators seeded with ``derive_seed(seed_for(n),
    "renoise")``: ``n`` = the shot frame ("shot" and "flow") or the frame
    number ("frame"). "flow" warps the shot's fields from the key frame along
    the source flow, with the frame's own fields where the flow is occluded.
    Key frames (also the anchors of cross-frame attention) come from
    :func:`~cinescale_post.ops.temporal.key_frames` on the source indices.
    ``warn(frame_numbers, key_every)`` is called when some frames' key frames
    are missing from ``frames``.
    """
    from cinescale_post.ops.temporal import chain_flows, derive_seed, flow_noise, key_frames, noise_fields

    shapes = [model.latent_shape(s.size) for s in stages]
    idx = [int(f.index) for f in frames]
    first: dict[int, int] = {}
    for p, i in enumerate(idx):
        first.setdefault(i, p)
    keys = key_frames(idx, key_every)
    off_grid = sorted({i for i, (_, on) in keys.items() if not on})
    if off_grid and warn is not None:
        warn([frames[first[i]].number for i in off_grid], key_every)
    key_pos = [first[keys[i][0]] for i in idx]

    def fields_of(number: int, purpose: str = "renoise") -> list:
        return [t.to(model.device, model.dtype) for t in noise_fields(derive_seed(seed_for(number), purpose), shapes)]

    if noise == "frame":
        return [fields_of(f.number) for f in frames], key_pos
    shot = fields_of(shot_key)
    if noise == "shot":
        return [shot for _ in frames], key_pos
    per_index: dict[int, list] = {}
    for key in sorted({k for k, _ in keys.values()}):
        run = [i for i in sorted(keys) if keys[i][0] == key]
        chain = chain_flows([frames[first[i]].rgb for i in run], flow)
        for i, (fl, valid) in zip(run, chain):
            per_index[i] = shot if i == key else flow_noise(
                shot, fl, valid, fields_of(frames[first[i]].number, "fresh"), flow_warp)
    return [per_index[i] for i in idx], key_pos


__all__ = ["NoisePolicy", "POLICIES", "from_file", "image_fields", "policy"]
