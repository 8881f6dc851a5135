"""Cross-frame attention: the anchor frame's self-attention keys/values
shared with the other frames of a batch (issue 7, part 1).

A batch that holds several frames of a clip is laid out in groups of
``frames`` consecutive rows, frame ``j`` of every group at row
``g * frames + j`` (classifier-free guidance doubles the batch as
``[uncond frames..., cond frames...]``, and scale fusion stacks windows
window-major, so frame = row % frames holds for every call). Every non-anchor
row attends to its own tokens *and* the anchor row's tokens of the same group
(``mode="concat"``, Tune-A-Video / Text2Video-Zero style "sparse" attention),
or to the anchor's only (``mode="anchor"``); the anchor row attends to itself
exactly as without the patch, so the anchor frame renders the same whatever
frames are batched with it.

:func:`cross_frame_attention` is the pure math; :class:`CrossFrameAttnProcessor`
wraps a diffusers attention processor (self-attention calls only: calls with
``encoder_hidden_states``, masks, 4-D inputs or one frame per group go to the
wrapped processor unchanged); :func:`apply_cross_frame` installs it and
returns a removable :class:`~cinescale_post.ops.handles.Handle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from cinescale_post.ops.handles import Handle

MODES = ("concat", "anchor")


@dataclass
class CrossFrameState:
    """What the cross-frame processors of one model share.

    ``frames``: frames per group of batch rows (1: the patch does nothing).
    ``anchor``: index of the anchor frame inside a group. ``mode``:
    "concat" (own + anchor keys/values) or "anchor" (anchor's only).
    ``enabled=False`` passes every call to the wrapped processor.
    """

    frames: int = 1
    anchor: int = 0
    mode: str = "concat"
    enabled: bool = True
    calls: int = field(default=0, compare=False)

    def __post_init__(self):
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"frames must be an integer >= 1, got {self.frames!r}")
        if not isinstance(self.anchor, int) or not 0 <= self.anchor < self.frames:
            raise ValueError(f"anchor must be in 0..{self.frames - 1}, got {self.anchor!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")


def cross_frame_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, anchor: int = 0,
                          mode: str = "concat") -> torch.Tensor:
    """Scaled dot-product attention with the anchor's keys/values shared.

    q, k, v: (R, heads, n, d) with R a multiple of ``frames``; returns
    (R, heads, n, d). Row r belongs to group ``r // frames``; its anchor row is
    ``(r // frames) * frames + anchor``. Non-anchor rows attend over
    ``[k_r ; k_anchor]`` (``"concat"``, 2n keys) or ``k_anchor`` (``"anchor"``);
    anchor rows use plain attention over their own keys.

    >>> q = k = v = torch.randn(4, 2, 5, 8)
    >>> cross_frame_attention(q, k, v, frames=2).shape
    torch.Size([4, 2, 5, 8])
    """
    if (q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or k.shape[:2] != q.shape[:2] or k.shape[-1] != q.shape[-1]
            or v.shape[:3] != k.shape[:3]):
        raise ValueError(f"expected q, k, v of shape (R, heads, n, d), got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    r = q.shape[0]
    if frames < 1 or r % frames:
        raise ValueError(f"cross-frame attention: {r} batch rows are not groups of {frames} frames")
    if frames == 1:
        return F.scaled_dot_product_attention(q, k, v)
    g = r // frames
    kg, vg = k.reshape(g, frames, *k.shape[1:]), v.reshape(g, frames, *v.shape[1:])
    ka = kg[:, anchor:anchor + 1].expand_as(kg)
    va = vg[:, anchor:anchor + 1].expand_as(vg)
    if mode == "concat":
        kk, vv = torch.cat([kg, ka], dim=3), torch.cat([vg, va], dim=3)
    else:
        kk, vv = ka, va
    out = F.scaled_dot_product_attention(q, kk.reshape(r, *kk.shape[2:]), vv.reshape(r, *vv.shape[2:]))
    rows = torch.arange(g, device=q.device) * frames + anchor
    out[rows] = F.scaled_dot_product_attention(q[rows], k[rows], v[rows])
    return out


class CrossFrameAttnProcessor:
    """Wraps a self-attention processor (diffusers ``AttnProcessor2_0``) with
    cross-frame attention (see the module docstring for the batch layout).

    Implements the plain processor's steps for 3-D inputs (spatial/group
    norm, q/k/v projections, ``norm_q``/``norm_k``, output projection,
    residual, rescale) with :func:`cross_frame_attention` in place of the
    attention itself.
    """

    def __init__(self, inner: Any, state: CrossFrameState):
        self.inner = inner
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        st = self.state
        if (not st.enabled or st.frames == 1 or encoder_hidden_states is not None or attention_mask is not None
                or hidden_states.ndim != 3):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        st.calls += 1
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        b, n, _ = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        hd = k.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, hd).transpose(1, 2) for t in (q, k, v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = cross_frame_attention(q, k, v, st.frames, st.anchor, st.mode)
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * hd).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def apply_cross_frame(model: Any, patterns: Sequence[str], state: CrossFrameState) -> Handle:
    """Install :class:`CrossFrameAttnProcessor` (sharing ``state``) on the
    attention processors of ``model`` matching the fnmatch ``patterns``
    (self-attention only, e.g. ``"*transformer_blocks.*.attn1.processor"``).

    Returns a handle (also a context manager) that puts the saved processors
    back, with ``.state`` and ``.layers``. Nothing is changed if a pattern
    matches no processor (``KeyError``).
    """
    from cinescale_post.ops.fusion import apply_processors

    h = apply_processors(model, patterns, lambda n, p: CrossFrameAttnProcessor(p, state), "cross-frame attention")
    h.state = state
    return h


__all__ = ["MODES", "CrossFrameAttnProcessor", "CrossFrameState", "apply_cross_frame", "cross_frame_attention"]
