"""NTK-aware per-axis RoPE base scaling for video DiTs (CineScale, ALGORITHM.md 4.2).

Wan's 3-D rotary embedding splits each attention head into a temporal, a
height and a width part; each part rotates with its own frequencies
``w_i = theta ** (-2 i / d_axis)``. CineScale multiplies the base of every
axis by a factor ``alpha`` ("ntk20" = ``[1, 20, 20]``: time untouched), which
stretches the wavelengths so positions beyond the training range stay in the
range the model has seen. The reference multiplies the base only
(``rule="reference"``); the classic NTK-aware form ``theta * a ** (d / (d - 2))``
is available as ``rule="ntk-aware"`` (a documented deviation).

Pure functions take numbers and return tensors (device and dtype from the
arguments, never ``.cuda()``); :func:`apply_ntk_rope` is the removable model
change: it swaps the precomputed frequency buffers of every diffusers
``WanRotaryPosEmbed`` under a module and puts the original tensors back.

Example::

    >>> cos, sin = rope_tables((4, 4, 4), 8, alphas=(1.0, 20.0, 20.0))
    >>> tuple(cos.shape)
    (8, 12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from cinescale_post.ops.handles import Handle, apply_each, patch_attributes

RULES = ("reference", "ntk-aware")
DEFAULT_THETA = 10000.0


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """(t, h, w) rotary dims of a Wan head: ``h = w = 2 * (head_dim // 6)``,
    ``t = head_dim - h - w`` (diffusers ``WanRotaryPosEmbed``; 128 -> (44, 42, 42)).

    Prefer :func:`model_axis_split`, which reads the split from the model.

    >>> axis_split(128), axis_split(12)
    ((44, 42, 42), (4, 4, 4))
    """
    if head_dim < 6 or head_dim % 2:
        raise ValueError(f"head_dim must be an even number >= 6, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def ntk_theta(theta: float, alpha: float, dim: int, rule: str = "reference") -> float:
    """Scaled RoPE base of one axis.

    ``rule="reference"``: ``theta * alpha`` (CineScale). ``rule="ntk-aware"``:
    ``theta * alpha ** (dim / (dim - 2))`` (the NTK-aware formula).

    >>> ntk_theta(10000.0, 20.0, 42)
    200000.0
    """
    if alpha <= 0 or not math.isfinite(alpha):
        raise ValueError(f"RoPE factor must be a positive number, got {alpha!r}")
    if rule == "reference":
        return float(theta) * float(alpha)
    if rule == "ntk-aware":
        if dim <= 2:
            raise ValueError(f"the ntk-aware rule needs an axis of more than 2 dims, got {dim}")
        return float(theta) * float(alpha) ** (dim / (dim - 2))
    raise ValueError(f"unknown RoPE rule {rule!r}; use one of {RULES}")


def rope_frequencies(dim: int, theta: float, *, dtype: torch.dtype = torch.float64,
                     device: Any = None) -> torch.Tensor:
    """Angular frequencies ``theta ** (-2 i / dim)``, i = 0 .. dim/2 - 1.

    Returns (dim // 2,) in ``dtype``.

    >>> rope_frequencies(4, 100.0).tolist()
    [1.0, 0.1]
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"a rotary axis needs an even number of dims >= 2, got {dim}")
    i = torch.arange(0, dim, 2, dtype=dtype, device=device)[: dim // 2]
    return 1.0 / (float(theta) ** (i / dim))


def rope_axis_table(dim: int, positions: int, theta: float, *, dtype: torch.dtype = torch.float64,
                    device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of ``p * w_i`` for integer positions 0 .. positions-1, each
    frequency repeated twice (interleaved real layout of diffusers).

    Returns two (positions, dim) tensors.
    """
    freqs = rope_frequencies(dim, theta, dtype=dtype, device=device)
    pos = torch.arange(positions, dtype=dtype, device=device)
    ang = torch.outer(pos, freqs)  # (P, dim/2)
    cos = ang.cos().repeat_interleave(2, dim=1)
    sin = ang.sin().repeat_interleave(2, dim=1)
    return cos, sin


def rope_tables(dims: Sequence[int], positions: int, alphas: Sequence[float] = (1.0, 1.0, 1.0), *,
                theta: float = DEFAULT_THETA, rule: str = "reference", dtype: torch.dtype = torch.float64,
                device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated per-axis tables with NTK-scaled bases.

    dims: (d_t, d_h, d_w); alphas: one factor per axis. Returns cos, sin of
    shape (positions, sum(dims)), laid out like ``WanRotaryPosEmbed.freqs_cos``.
    """
    if len(dims) != len(alphas):
        raise ValueError(f"{len(dims)} axes but {len(alphas)} RoPE factors")
    cs, ss = [], []
    for d, a in zip(dims, alphas):
        c, s = rope_axis_table(int(d), positions, ntk_theta(theta, float(a), int(d), rule), dtype=dtype,
                               device=device)
        cs.append(c)
        ss.append(s)
    return torch.cat(cs, dim=1), torch.cat(ss, dim=1)


@dataclass(frozen=True)
class RopeSpec:
    """Per-axis RoPE base factors (temporal, height, width).

    ``alphas``: reference ``(1, 20, 20)`` for the first stage and
    ``(1, 25, 25)`` for the upscaled stage. ``theta``: the model's base
    (10 000 for Wan; diffusers hard-codes it). ``rule``: "reference" or
    "ntk-aware" (see :func:`ntk_theta`).
    """

    alphas: tuple[float, float, float] = (1.0, 20.0, 20.0)
    theta: float = DEFAULT_THETA
    rule: str = "reference"

    def __post_init__(self):
        a = tuple(float(x) for x in self.alphas)
        if len(a) != 3 or not all(math.isfinite(x) and x > 0 for x in a):
            raise ValueError(f"RoPE factors must be 3 positive numbers (t, h, w), got {self.alphas!r}")
        object.__setattr__(self, "alphas", a)
        if self.rule not in RULES:
            raise ValueError(f"RoPE rule {self.rule!r}; use one of {RULES}")
        if not self.theta > 0:
            raise ValueError(f"RoPE theta must be positive, got {self.theta!r}")

    @property
    def identity(self) -> bool:
        return self.alphas == (1.0, 1.0, 1.0)


def rope_modules(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every rotary embedding with Wan's per-axis layout
    (``t_dim``/``h_dim``/``w_dim``, ``max_seq_len`` and ``freqs_cos``/``freqs_sin``)."""
    found = []
    for name, mod in model.named_modules():
        if all(hasattr(mod, a) for a in ("t_dim", "h_dim", "w_dim", "max_seq_len", "freqs_cos", "freqs_sin")):
            found.append((name, mod))
    return found


def model_axis_split(model: Any) -> tuple[int, int, int]:
    """The (t, h, w) split of the model's rotary embedding, read from the
    module (falls back to the config's ``attention_head_dim``)."""
    mods = rope_modules(model)
    if mods:
        m = mods[0][1]
        return int(m.t_dim), int(m.h_dim), int(m.w_dim)
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "attention_head_dim", None):
        return axis_split(int(cfg.attention_head_dim))
    raise ValueError(f"{type(model).__name__} has no per-axis rotary embedding")


def apply_ntk_rope(model: Any, spec: RopeSpec) -> Handle:
    """Rebuild the frequency buffers of every Wan rotary embedding under
    ``model`` with the per-axis bases of ``spec``; the handle restores the
    original tensors (bit-exact). Buffers keep their dtype and device.

    The tables are computed in float64 from integer positions like the
    reference and cast to the buffer dtype. Works for any axis split read
    from the module (never hard-coded).
    """
    mods = rope_modules(model)
    if not mods:
        raise ValueError(f"{type(model).__name__} has no Wan rotary embedding (WanRotaryPosEmbed) to scale")
    changes = []
    for _, m in mods:
        dims = (int(m.t_dim), int(m.h_dim), int(m.w_dim))
        ref = m.freqs_cos
        dtype = torch.float32 if ref.device.type == "mps" else torch.float64  # mps has no float64
        cos, sin = rope_tables(dims, int(m.max_seq_len), spec.alphas, theta=spec.theta, rule=spec.rule,
                               dtype=dtype, device=ref.device)
        changes += [(m, "freqs_cos", cos.to(ref.dtype)), (m, "freqs_sin", sin.to(m.freqs_sin.dtype))]
    a = spec.alphas
    return patch_attributes(changes, f"ntk-rope x({a[0]:g},{a[1]:g},{a[2]:g}) on {len(mods)} rotary embedding(s)")


def apply_ntk_rope_many(models: Sequence[Any], spec: RopeSpec) -> Handle:
    """:func:`apply_ntk_rope` on several models (e.g. Wan 2.2's two experts)."""
    return apply_each(f"ntk-rope on {len(models)} model(s)", models, lambda m: apply_ntk_rope(m, spec))


__all__ = ["RULES", "RopeSpec", "apply_ntk_rope", "apply_ntk_rope_many", "axis_split", "model_axis_split",
           "ntk_theta", "rope_axis_table", "rope_frequencies", "rope_modules", "rope_tables"]
