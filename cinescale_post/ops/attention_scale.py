"""Attention temperature for video DiTs at high resolution (CineScale, ALGORITHM.md 4.3).

The softmax scale of every *self*-attention is multiplied by

    factor = log(base_tokens * coef) / log(base_tokens)

where ``coef`` is chosen from the number of tokens per latent frame
(reference rule: none up to 10 000 tokens, 1.5 above 10 000, 2.0 above
20 000; ``base_tokens`` = 3 600 = 45 x 80, Wan's 720p frame). The reference
derives tokens per frame as ``L / 21`` (81 frames hard-coded); here it is
computed from the real latent shape of every forward call.
Cross-attention is never touched.

The model change goes through the diffusers attention-processor slot:
:func:`apply_attention_scale` installs :class:`TemperatureAttnProcessor` on the
self-attention layers and a forward pre-hook on the transformer that tells the
processors the current tokens per frame; the handle restores the original
processors and removes the hook.

Example::

    >>> round(attention_scale_factor(32640), 4), attention_scale_factor(8160)
    (1.0846, 1.0)
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Sequence

from cinescale_post.ops.handles import Handle, apply_each

REFERENCE_RULE: tuple[tuple[int, float], ...] = ((10000, 1.5), (20000, 2.0))
REFERENCE_BASE_TOKENS = 3600
SELF_ATTENTION = ("blocks.*.attn1.processor",)


def attention_coef(tokens_per_frame: int, rule: Sequence[tuple[int, float]] = REFERENCE_RULE) -> float | None:
    """The coef of the highest threshold strictly exceeded, or None.

    >>> [attention_coef(n) for n in (8160, 10000, 18360, 20001)]
    [None, None, 1.5, 2.0]
    """
    coef = None
    for threshold, c in sorted(rule):
        if tokens_per_frame > threshold:
            coef = float(c)
    return coef


def temperature(coef: float | None, base_tokens: int = REFERENCE_BASE_TOKENS) -> float:
    """``log(base_tokens * coef) / log(base_tokens)``; 1.0 for no coef.

    >>> round(temperature(1.5), 4), temperature(None)
    (1.0495, 1.0)
    """
    if coef is None:
        return 1.0
    if base_tokens <= 1 or coef <= 0:
        raise ValueError(f"need base_tokens > 1 and coef > 0, got {base_tokens}, {coef}")
    return math.log(base_tokens * coef) / math.log(base_tokens)


def attention_scale_factor(tokens_per_frame: int, *, base_tokens: int = REFERENCE_BASE_TOKENS,
                           rule: Sequence[tuple[int, float]] = REFERENCE_RULE, coef: float | None = None) -> float:
    """Multiplier of the softmax scale for a given number of tokens per latent
    frame (``coef`` given: fixed coef, the rule is not used)."""
    return temperature(coef if coef is not None else attention_coef(tokens_per_frame, rule), base_tokens)


def tokens_per_frame(latent_hw: tuple[int, int], patch_hw: tuple[int, int] = (2, 2)) -> int:
    """Tokens of one latent frame: (H / p_h) * (W / p_w). 1088x1920 (latent
    136x240, patch 2x2) -> 8160."""
    return (int(latent_hw[0]) // int(patch_hw[0])) * (int(latent_hw[1]) // int(patch_hw[1]))


@dataclass(frozen=True)
class AttentionScaleSpec:
    """How the self-attention temperature is chosen.

    ``base_tokens``: 3 600 (reference). ``rule``: ((threshold, coef), ...),
    reference ((10000, 1.5), (20000, 2.0)). ``coef``: a fixed coef instead of
    the rule (the reference README suggests 1.5 for 4K I2V); ``factor``: a
    fixed multiplier (overrides everything; 1.0 makes the processor exact
    identity). ``layers``: fnmatch patterns over processor names (self-attention).
    """

    base_tokens: int = REFERENCE_BASE_TOKENS
    rule: tuple[tuple[int, float], ...] = REFERENCE_RULE
    coef: float | None = None
    factor: float | None = None
    layers: tuple[str, ...] = SELF_ATTENTION

    def __post_init__(self):
        if not isinstance(self.base_tokens, int) or self.base_tokens <= 1:
            raise ValueError(f"base_tokens must be an integer > 1, got {self.base_tokens!r}")
        rule = tuple((int(t), float(c)) for t, c in self.rule)
        if any(c <= 0 or t < 0 for t, c in rule):
            raise ValueError(f"rule entries are (tokens >= 0, coef > 0), got {self.rule!r}")
        object.__setattr__(self, "rule", rule)
        for k in ("coef", "factor"):
            v = getattr(self, k)
            if v is not None and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{k} must be a positive number or None, got {v!r}")
        object.__setattr__(self, "layers", tuple(self.layers))

    def factor_for(self, tokens: int) -> float:
        if self.factor is not None:
            return float(self.factor)
        return attention_scale_factor(tokens, base_tokens=self.base_tokens, rule=self.rule, coef=self.coef)


class _State:
    """Shared between the pre-hook and the processors of one model."""

    def __init__(self, spec: AttentionScaleSpec):
        self.spec = spec
        self.tokens: int | None = None
        self.factor: float = 1.0
        self.calls = 0


class TemperatureAttnProcessor:
    """Self-attention of a diffusers ``WanAttention`` with the softmax scale
    ``factor / sqrt(head_dim)``; the same projections, q/k norms and RoPE as
    ``WanAttnProcessor``. Calls with a context (cross-attention) or added
    image projections go to the wrapped processor unchanged."""

    def __init__(self, inner: Any, state: _State):
        self.inner = inner
        self.state = state
        self._attention_backend = getattr(inner, "_attention_backend", None)
        self._parallel_config = getattr(inner, "_parallel_config", None)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        if encoder_hidden_states is not None or getattr(attn, "add_k_proj", None) is not None or kwargs:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        self.state.calls += 1
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _rotate(query, *rotary_emb)
            key = _rotate(key, *rotary_emb)
        f = self.state.factor
        scale = None if f == 1.0 else f / math.sqrt(query.shape[-1])  # None: the stock default, bit-exact
        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                    scale=scale, backend=self._attention_backend,
                                    parallel_config=self._parallel_config)
        out = out.flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _rotate(x, freqs_cos, freqs_sin):
    """Wan's interleaved rotary embedding (as diffusers applies it).
    x: (B, S, heads, d); freqs: (1, S, 1, d)."""
    import torch

    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def _latent_shape(args, kwargs):
    x = kwargs.get("hidden_states", args[0] if args else None)
    return tuple(x.shape) if x is not None and getattr(x, "ndim", 0) == 5 else None


def apply_attention_scale(model: Any, spec: AttentionScaleSpec = AttentionScaleSpec()) -> Handle:
    """Install the temperature on the self-attention processors of a diffusers
    Wan transformer (``set_attn_processor``) plus a forward pre-hook that
    computes the factor from the latent (B, C, F, H, W) of every call and the
    model's ``patch_size``. The handle restores the processors exactly.

    The handle exposes ``state`` (``tokens``, ``factor``, ``calls`` of the
    last forward) for logs and tests.
    """
    procs = dict(model.attn_processors)
    targets = [n for n in procs if any(fnmatch.fnmatchcase(n, p) for p in spec.layers)]
    if not targets:
        raise ValueError(f"no attention processor of {type(model).__name__} matches {spec.layers}")
    patch = tuple(getattr(model.config, "patch_size", (1, 2, 2)))
    state = _State(spec)

    def pre_hook(module, args, kwargs):
        shape = _latent_shape(args, kwargs)
        if shape is not None:
            state.tokens = tokens_per_frame(shape[-2:], patch[-2:])
            state.factor = spec.factor_for(state.tokens)
        return None

    new = {n: (TemperatureAttnProcessor(p, state) if n in targets else p) for n, p in procs.items()}
    model.set_attn_processor(dict(new))  # diffusers pops from the dict it gets: pass a copy
    hook = model.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def restore() -> None:
        hook.remove()
        model.set_attn_processor(dict(procs))

    h = Handle(f"attention temperature on {len(targets)} self-attention layer(s)", restore)
    h.state = state  # type: ignore[attr-defined]
    return h


def apply_attention_scale_many(models: Sequence[Any], spec: AttentionScaleSpec) -> Handle:
    """:func:`apply_attention_scale` on several models (Wan 2.2's experts)."""
    return apply_each(f"attention temperature on {len(models)} model(s)", models,
                      lambda m: apply_attention_scale(m, spec))


__all__ = ["AttentionScaleSpec", "REFERENCE_BASE_TOKENS", "REFERENCE_RULE", "TemperatureAttnProcessor",
           "apply_attention_scale", "apply_attention_scale_many", "attention_coef", "attention_scale_factor",
           "temperature", "tokens_per_frame"]
