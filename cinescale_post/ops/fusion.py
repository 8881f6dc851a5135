"""Scale fusion (FreeScale, ALGORITHM.md section 3): the math and the
diffusers attention processor that applies it.

For every self-attention call of an upscaled stage the tokens are attended
twice, globally and in overlapping local windows, and fused as

    out = blur(local) + (global - blur(global))

i.e. low frequencies of the local branch plus high frequencies of the global
branch, with the reference's 3-D Gaussian (see :mod:`.blur`).

Window geometry follows the reference exactly (``scale_attention.py``): the
window is the token grid that UNet level has at the base resolution, the
stride is half a window, borders are zero-padded by the jitter range
``window // 8`` and every window is jittered by a draw from an injectable
``jitter_fn(lo, hi) -> int`` (inclusive, like ``random.randint``; width axis
first, then height).

Pure functions first; :class:`ScaleFusionAttnProcessor` and
:func:`apply_scale_fusion` at the end.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from cinescale_post.ops.blur import BLUR_MODES, blur_kernel_size, blur_tokens
from cinescale_post.ops.handles import Handle

JitterFn = Callable[[int, int], int]
View = tuple[int, int, int, int]  # (h0, h1, w0, w1), end exclusive


@dataclass(frozen=True)
class WindowGeometry:
    """Local-window layout of one UNet level (all sizes in tokens)."""

    grid: tuple[int, int]
    scale: tuple[int, int]  # (s_h, s_w) = target // base
    window: tuple[int, int]
    stride: tuple[int, int]
    jitter: tuple[int, int]  # (r_h, r_w)
    kernel: int  # blur kernel size

    @property
    def counts(self) -> tuple[int, int]:
        return (window_count(self.grid[0], self.window[0], self.stride[0]),
                window_count(self.grid[1], self.window[1], self.stride[1]))


def window_geometry(grid: tuple[int, int], target_hw: tuple[int, int], base: int = 1024,
                    base_latent: int = 128) -> WindowGeometry:
    """Reference geometry for a token ``grid`` (h_tok, w_tok) at a target of
    ``target_hw`` (H, W) pixels, for a model whose base resolution is ``base``
    pixels (``base_latent`` latent cells: 1024 / 128 for SDXL).

    Square targets give: window = the level's grid at base size, stride = half.

    >>> g = window_geometry((128, 128), (2048, 2048))
    >>> g.window, g.stride, g.jitter, g.counts, g.kernel
    ((64, 64), (32, 32), (8, 8), (3, 3), 3)
    """
    h_tok, w_tok = int(grid[0]), int(grid[1])
    s_h = max(1, int(target_hw[0]) // base)
    s_w = max(1, int(target_hw[1]) // base)
    ratio = s_h / s_w
    f = base_latent * s_h / h_tok
    if ratio > 1:
        sub_h, sub_w = base_latent, int(base_latent / ratio)
    else:
        sub_h, sub_w = int(base_latent * ratio), base_latent
    win_h = min(h_tok, max(1, int(sub_h / f)))
    win_w = min(w_tok, max(1, int(sub_w / f)))
    str_h = max(1, int((sub_h // 2) / f))
    str_w = max(1, int((sub_w // 2) / f))
    return WindowGeometry(grid=(h_tok, w_tok), scale=(s_h, s_w), window=(win_h, win_w),
                          stride=(str_h, str_w), jitter=(win_h // 8, win_w // 8),
                          kernel=blur_kernel_size(s_h, s_w))


def window_count(grid: int, window: int, stride: int) -> int:
    """DemoFusion/FreeScale count: ``int((G - win) / stride - 1e-6) + 2`` if G > win, else 1."""
    return int((grid - window) / stride - 1e-6) + 2 if grid > window else 1


def window_starts(grid: int, window: int, stride: int) -> list[int]:
    """Start of every window along one axis; the last one is clamped to end at the border."""
    out = []
    for i in range(window_count(grid, window, stride)):
        start = i * stride
        end = start + window
        if end > grid:
            start = start + grid - end
        out.append(max(0, start))
    return out


def _axis_jitter(start: int, end: int, grid: int, r: int, jitter_fn: JitterFn | None) -> int:
    if jitter_fn is None:
        return 0
    if start != 0 and end != grid:
        return int(jitter_fn(-r, r))
    if start == 0 and end != grid:
        return int(jitter_fn(-r, 0))
    if start != 0 and end == grid:
        return int(jitter_fn(0, r))
    return 0  # the window spans the whole axis: no draw


def get_views(geom: WindowGeometry, jitter_fn: JitterFn | None = None) -> list[View]:
    """Windows in *padded* coordinates (the grid padded by the jitter range on
    each side), row-major; each is jittered (width draw first, then height)
    and shifted by the jitter range. Without ``jitter_fn`` the windows sit at
    their nominal places (shifted by the padding)."""
    (gh, gw), (wh, ww), (sh, sw), (rh, rw) = geom.grid, geom.window, geom.stride, geom.jitter
    views = []
    for h0 in window_starts(gh, wh, sh):
        for w0 in window_starts(gw, ww, sw):
            h1, w1 = h0 + wh, w0 + ww
            jw = _axis_jitter(w0, w1, gw, rw, jitter_fn)
            jh = _axis_jitter(h0, h1, gh, rh, jitter_fn)
            views.append((h0 + jh + rh, h1 + jh + rh, w0 + jw + rw, w1 + jw + rw))
    return views


def local_window_attention(x: torch.Tensor, views: Sequence[View], pad: tuple[int, int],
                           attend: Callable[[torch.Tensor], torch.Tensor],
                           max_batch: int | None = None) -> torch.Tensor:
    """Local branch: attend inside every window of the zero-padded grid and
    average overlaps uniformly.

    x: (B, h, w, C); views in padded coordinates (see :func:`get_views`);
    pad = (r_h, r_w); ``attend``: (B', n, C) -> (B', n, C), applied to windows
    stacked along the batch axis (``max_batch`` windows at a time; None: all).
    Returns (B, h, w, C); positions no window covers are 0.
    """
    b, h, w, c = x.shape
    rh, rw = pad
    xp = F.pad(x, (0, 0, rw, rw, rh, rh))
    acc = torch.zeros_like(xp)
    cnt = torch.zeros((1, xp.shape[1], xp.shape[2], 1), dtype=x.dtype, device=x.device)
    groups: dict[tuple[int, int], list[View]] = {}
    for v in views:
        groups.setdefault((v[1] - v[0], v[3] - v[2]), []).append(v)
    for (vh, vw), vs in groups.items():
        step = max_batch or len(vs)
        for i in range(0, len(vs), step):
            chunk = vs[i:i + step]
            tiles = torch.cat([xp[:, h0:h1, w0:w1, :] for h0, h1, w0, w1 in chunk], dim=0)
            out = attend(tiles.reshape(len(chunk) * b, vh * vw, c)).reshape(len(chunk), b, vh, vw, c)
            for j, (h0, h1, w0, w1) in enumerate(chunk):
                acc[:, h0:h1, w0:w1, :] += out[j]
                cnt[:, h0:h1, w0:w1, :] += 1
    acc = acc[:, rh:rh + h, rw:rw + w, :]
    cnt = cnt[:, rh:rh + h, rw:rw + w, :]
    return torch.where(cnt > 0, acc / cnt.clamp(min=1), torch.zeros_like(acc))


def dilated_global_attention(x: torch.Tensor, scale: tuple[int, int],
                             attend: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fast_mode`` global branch: tokens split into ``s_h * s_w`` interleaved
    sub-grids ``x[:, a::s_h, b::s_w]``, each attending to itself only.

    x: (B, h, w, C) -> (B, h, w, C).
    """
    b, h, w, c = x.shape
    s_h, s_w = scale
    out = torch.empty_like(x)
    subs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a in range(s_h):
        for bb in range(s_w):
            sub = x[:, a::s_h, bb::s_w]
            subs.setdefault(tuple(sub.shape[1:3]), []).append((a, bb))
    for (sh, sw), offsets in subs.items():
        tiles = torch.cat([x[:, a::s_h, bb::s_w] for a, bb in offsets], dim=0)
        res = attend(tiles.reshape(len(offsets) * b, sh * sw, c)).reshape(len(offsets), b, sh, sw, c)
        for j, (a, bb) in enumerate(offsets):
            out[:, a::s_h, bb::s_w] = res[j]
    return out


def fuse_scales(local: torch.Tensor, global_: torch.Tensor, kernel: int, sigma: float = 1.0,
                blur: str = "3d") -> torch.Tensor:
    """``blur(local) + (global - blur(global))``. local, global_: (B, h, w, C)."""
    return blur_tokens(local, kernel, sigma, blur) + (global_ - blur_tokens(global_, kernel, sigma, blur))


def token_grid(n_tokens: int, latent_hw: tuple[int, int], max_levels: int = 8) -> tuple[int, int]:
    """The (h, w) token grid of a UNet level with ``n_tokens`` tokens, for a
    latent of ``latent_hw``: the first power-of-two downsampling (with the
    ceil of stride-2 convs) whose grid has exactly ``n_tokens`` cells."""
    h, w = latent_hw
    for level in range(max_levels + 1):
        gh, gw = h, w
        for _ in range(level):
            gh, gw = math.ceil(gh / 2), math.ceil(gw / 2)
        if gh * gw == n_tokens:
            return gh, gw
    raise ValueError(f"{n_tokens} tokens do not match any level of a {h}x{w} latent")


# ------------------------------------------------------------------ processor


@dataclass
class FusionState:
    """What the scale-fusion processors of one model share; set by the cascade.

    ``target_hw`` (H, W) pixels of the stage; ``latent_hw`` the latent grid
    of the UNet input (to recover each level's token grid). ``enabled=False``
    makes every processor call its wrapped processor unchanged.
    """

    target_hw: tuple[int, int] | None = None
    latent_hw: tuple[int, int] | None = None
    base: int = 1024
    base_latent: int = 128
    fast_mode: bool = False
    blur: str = "3d"
    sigma: float = 1.0
    jitter_fn: JitterFn | None = None
    max_window_batch: int | None = None
    enabled: bool = True
    calls: int = field(default=0, compare=False)

    def __post_init__(self):
        if self.blur not in BLUR_MODES:
            raise ValueError(f"blur {self.blur!r} is not one of {', '.join(BLUR_MODES)}")


class ScaleFusionAttnProcessor:
    """Wraps a self-attention processor (diffusers ``AttnProcessor2_0``) with
    scale fusion. Calls with ``encoder_hidden_states`` (cross-attention), with
    non-3-D inputs, or while ``state.enabled`` is False go straight to the
    wrapped processor."""

    def __init__(self, inner: Any, state: FusionState):
        self.inner = inner
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        st = self.state
        if (not st.enabled or encoder_hidden_states is not None or hidden_states.ndim != 3
                or st.target_hw is None or st.latent_hw is None):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        st.calls += 1
        b, n, c = hidden_states.shape
        grid = token_grid(n, st.latent_hw)
        geom = window_geometry(grid, st.target_hw, st.base, st.base_latent)

        def attend(t: torch.Tensor) -> torch.Tensor:
            return self.inner(attn, t, None, attention_mask, temb, *args, **kwargs)

        x = hidden_states.reshape(b, grid[0], grid[1], c)
        if st.fast_mode:
            g = dilated_global_attention(x, geom.scale, attend)
        else:
            g = attend(hidden_states).reshape(b, grid[0], grid[1], c)
        views = get_views(geom, st.jitter_fn)
        loc = local_window_attention(x, views, geom.jitter, attend, st.max_window_batch)
        out = fuse_scales(loc, g, geom.kernel, st.sigma, st.blur)
        return out.reshape(b, n, c)


def apply_processors(model: Any, patterns: Sequence[str], make: Callable[[str, Any], Any],
                     name: str) -> Handle:
    """Replace the attention processors of ``model`` whose names match any of
    the fnmatch ``patterns`` (e.g. ``"*attn1.processor"``) by ``make(name,
    old)``; the handle restores the saved processors."""
    saved = dict(model.attn_processors)
    chosen = [n for n in saved if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise KeyError(f"no attention processor of {type(model).__name__} matches {list(patterns)}; "
                       f"fix: declare patterns that match its processors, e.g. {list(saved)[:3]}")
    new = {n: (make(n, p) if n in chosen else p) for n, p in saved.items()}
    model.set_attn_processor(dict(new))  # it pops from the dict it is given
    h = Handle(f"{name} on {len(chosen)} attention layers", lambda: model.set_attn_processor(dict(saved)))
    h.layers = tuple(chosen)
    return h


def apply_scale_fusion(model: Any, patterns: Sequence[str], state: FusionState) -> Handle:
    """Install :class:`ScaleFusionAttnProcessor` (sharing ``state``) on the
    matching self-attention layers. Returns a handle with ``.state``."""
    h = apply_processors(model, patterns, lambda n, p: ScaleFusionAttnProcessor(p, state), "scale fusion")
    h.state = state
    return h


__all__ = ["FusionState", "ScaleFusionAttnProcessor", "WindowGeometry", "apply_processors",
           "apply_scale_fusion", "dilated_global_attention", "fuse_scales", "get_views",
           "local_window_attention", "token_grid", "window_count", "window_geometry", "window_starts"]
