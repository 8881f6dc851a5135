"""Transient working sets at their peak: attention, UNet and DiT hidden states,
VAE tiles (``ops.memory_estimate`` plans with these). Bytes; sizes are
``(width, height)``; ``tokens`` = sequence length N.

The constants (``*_FACTOR``) are counts of live tensors of the named shape at
the peak, read off the diffusers block implementations and checked against
measured peaks (``benchmarks/bench_memory.py``; ratios in BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

KERNELS = ("efficient", "math")

# live (N, C)-shaped tensors of one transformer block at its peak, besides attention:
# residual, norm output, the attention output and projection, and the feed-forward
# intermediate (counted separately, in units of its own width).
BLOCK_FACTOR = 4
# live (C, h, w) tensors of a ResNet block at its peak (input, group-norm, activation, conv out)
RESNET_FACTOR = 4
# GEGLU feed-forward of a UNet transformer block (inner width 4C): the projection (8C
# wide, value and gate), the gate's GELU (4C) and their product (4C) are alive together.
GEGLU_FACTOR = 16
# live (C_0, H, W) tensors of a VAE decoder's full-resolution block besides its upsampled
# (C_1-wide) input; and the upsampled input, its group norm and its activation, alive
# together in the block's first ResNet (3 C_1): the peak is the larger
# (issue 16: SDXL VAE decoder on meta, 3 x 256 x H x W at the peak).
VAE_FACTOR = 4
VAE_INPUT_FACTOR = 3
# bytes per element of FreeU's Fourier filter at its peak: three complex64 spectra of the
# skip (the shifted spectrum, the masked product, its inverse shift) = 3 x 8
FREEU_FFT_BYTES = 24


def attention_bytes(batch: int, heads: int, tokens: int, head_dim: int, elem: int, *,
                    kv_tokens: int | None = None, kernel: str = "efficient") -> int:
    """Transient memory of one scaled-dot-product attention call.

    q: (B, H, N, d), k/v: (B, H, M, d), out: (B, H, N, d), M = ``kv_tokens`` (N
    for self-attention). ``"efficient"`` (flash / memory-efficient SDPA, and
    torch's CPU flash kernel): q, k, v, out = ``(2N + 2M) B H d`` elements (+
    a float32 log-sum-exp ``B H N``). ``"math"``: also the score matrix and its
    softmax, ``2 B H N M`` elements.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r} is not one of {KERNELS}")
    m = tokens if kv_tokens is None else kv_tokens
    qkvo = (2 * tokens + 2 * m) * batch * heads * head_dim * elem
    if kernel == "efficient":
        return int(qkvo + batch * heads * tokens * 4)
    return int(qkvo + 2 * batch * heads * tokens * m * elem)


def _tup(x: Any, n: int) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x] * n


def unet_activation_bytes(cfg: dict, latent_hw: tuple[int, int], batch: int, elem: int, *,
                          kernel: str = "efficient", text_tokens: int = 77, freeu: bool = False) -> int:
    """Peak activations of one diffusers ``UNet2DConditionModel`` forward.

    ``cfg``: the UNet config (block_out_channels, layers_per_block,
    down_block_types, attention_head_dim / num_attention_heads,
    cross_attention_dim); ``latent_hw``: (h, w) latent cells; ``batch``: rows
    (2 with batched CFG). Skip connections: every down-block resnet and
    downsampler output (B, C_i, h_i, w_i) is kept until the up path; the
    working set of level i is ``RESNET_FACTOR`` (B, C_i, h_i, w_i) tensors, or
    for a cross-attention level the transformer block's (B, N_i, C_i) tensors
    ``BLOCK_FACTOR`` + its GEGLU feed-forward (``GEGLU_FACTOR`` C_i: the 8 C_i
    projection, the 4 C_i GELU and the 4 C_i product) + self- and
    cross-attention at N_i = h_i w_i tokens. Peak = skips + max working set.

    ``freeu``: FreeU runs on the up path (``ops.freeu``): at the finest level
    whose hidden input is one of the two deepest decoder widths, the resnet's
    concatenated input (C_h + C_s), the scaled hidden copy (C_h), the
    upsampled hidden (C_h) and the skip's three complex64 spectra
    (``FREEU_FFT_BYTES`` per element) are alive with the skips of that level
    and finer. Checked against the meta-device simulation (issue 16,
    BENCHMARKS.md "Real-size simulation").
    """
    chans = list(cfg["block_out_channels"])
    n = len(chans)
    layers = int(cfg.get("layers_per_block", 2))
    types = list(cfg.get("down_block_types", ["CrossAttnDownBlock2D"] * n))
    heads = _tup(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), n)
    h, w = latent_hw
    skips = batch * chans[0] * h * w  # conv_in
    level_skips = [skips]  # skip elements pushed at each level (conv_in counts at level 0)
    working = 0
    for i, c in enumerate(chans):
        hi, wi = max(1, math.ceil(h / 2 ** i)), max(1, math.ceil(w / 2 ** i))
        hw = hi * wi
        skips += layers * batch * c * hw
        level_skips[i] += layers * batch * c * hw
        if i < n - 1:
            down = batch * c * max(1, math.ceil(hi / 2)) * max(1, math.ceil(wi / 2))
            skips += down
            level_skips.append(down)  # the downsampler's output is the next level's first skip
        # up path at this level: concatenated input is about 2c wide
        level = RESNET_FACTOR * batch * 2 * c * hw * elem
        if "CrossAttn" in types[i]:
            hd = max(1, c // int(heads[i]))
            tb = (BLOCK_FACTOR + GEGLU_FACTOR) * c * batch * hw * elem
            self_attn = attention_bytes(batch, int(heads[i]), hw, hd, elem, kernel=kernel)
            cross = attention_bytes(batch, int(heads[i]), hw, hd, elem, kv_tokens=text_tokens, kernel=kernel)
            level = max(level, tb, BLOCK_FACTOR * c * batch * hw * elem + max(self_attn, cross))
        working = max(working, level)
    peak = skips * elem + working
    if freeu and n >= 2:
        # finest level i whose up-path hidden input (width chans[i + 1]) is a FreeU stage
        i = max(0, n - 3)
        c_h, c_s = chans[i + 1], chans[i]
        hw = max(1, math.ceil(h / 2 ** i)) * max(1, math.ceil(w / 2 ** i))
        alive = sum(level_skips[:i + 1])
        fu = alive * elem + batch * hw * ((3 * c_h + c_s) * elem + FREEU_FFT_BYTES * c_s)
        peak = max(peak, fu)
    return int(peak)


def dit_tokens(frames: int, size: tuple[int, int], *, latent_factor: int = 8, temporal_factor: int = 4,
               patch: Sequence[int] = (1, 2, 2)) -> int:
    """Sequence length of a video DiT: ``F`` pixel frames (4k+1) at (W, H)
    -> ``((F-1)//t + 1)/pt * (H/8/ph) * (W/8/pw)`` tokens."""
    w, h = size
    lf = (int(frames) - 1) // temporal_factor + 1
    return (max(1, lf // patch[0]) * max(1, h // latent_factor // patch[1])
            * max(1, w // latent_factor // patch[2]))


def dit_activation_bytes(tokens: int, dim: int, heads: int, ffn_dim: int, batch: int, elem: int, *,
                         text_tokens: int = 512, kernel: str = "efficient", world: int = 1) -> int:
    """Peak activations of one DiT forward (one block at a time; the residual
    stream (B, N, D) persists). Working set of a block: ``BLOCK_FACTOR`` (B, N,
    D) tensors, the float32 RoPE copies of q and k (2 (B, N, D) x 4 bytes), and
    either the attention (self, then cross to ``text_tokens``) or the feed-
    forward's two (B, N, ffn_dim) tensors. With context parallelism over
    ``world`` ranks each rank holds N / world tokens (Ulysses: N tokens of H /
    world heads during attention: the same bytes)."""
    n = math.ceil(tokens / max(1, int(world)))
    hd = dim // heads
    resid = batch * n * dim * elem
    base = BLOCK_FACTOR * batch * n * dim * elem
    rope = 2 * batch * n * dim * 4
    attn = max(attention_bytes(batch, heads, n, hd, elem, kv_tokens=tokens if world > 1 else None, kernel=kernel)
               if kernel == "math" else attention_bytes(batch, heads, n, hd, elem, kernel=kernel),
               attention_bytes(batch, heads, n, hd, elem, kv_tokens=text_tokens, kernel=kernel))
    ffn = 2 * batch * n * ffn_dim * elem
    return int(resid + base + max(rope + attn, ffn))


def vae_bytes(tile: tuple[int, int], channels: Sequence[int], elem: int, *, frames: int = 1,
              mid_attention: bool = True, out_size: tuple[int, int] | None = None, latent_factor: int = 8,
              kernel: str = "efficient") -> int:
    """Working memory of a VAE decode (and about the same for encode) of one
    ``tile`` (W, H) pixels (the whole frame when untiled), ``frames`` frames
    at a time (Wan: 4 pixel frames per latent frame; SDXL: 1).

    ``channels``: the VAE's ``block_out_channels`` (low to high level). The
    peak is in the full-resolution decoder block: the larger of the upsampled
    input (C_1 wide) with ``VAE_FACTOR`` C_0-wide tensors, and
    ``VAE_INPUT_FACTOR`` C_1-wide tensors (input, group norm, activation of
    the first ResNet), at (W, H) in the VAE's dtype; the mid-block attention
    (one head over the latent cells of the tile) when ``mid_attention``.
    ``out_size``: the assembled output image(s) (3 channels, float32) kept
    while tiles are decoded."""
    tw, th = tile
    hw = tw * th
    c0 = channels[0]
    c1 = channels[1] if len(channels) > 1 else c0
    full = max(c1 + VAE_FACTOR * c0, VAE_INPUT_FACTOR * c1) * hw * frames * elem
    attn = 0
    if mid_attention:
        cells = max(1, hw // (latent_factor * latent_factor))
        attn = attention_bytes(frames, 1, cells, channels[-1], elem, kernel=kernel)
    out = 0
    if out_size is not None:
        out = 2 * 3 * out_size[0] * out_size[1] * frames * 4
    return int(max(full, attn) + out)


def _tile_extents(n: int, tile: int, stride: int) -> list[int]:
    """Sizes of the tiles diffusers cuts along an axis of ``n`` latent cells."""
    return [min(tile, n - i) for i in range(0, n, max(1, stride))]


def video_vae_bytes(size: tuple[int, int], frames: int, channels: Sequence[int], elem: int, *,
                    tile: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
                    latent_factor: int = 8, temporal_factor: int = 4, kernel: str = "efficient") -> int:
    """Peak working memory of a causal video VAE decode (diffusers
    ``AutoencoderKLWan``) of ``frames`` pixel frames at ``size`` (W, H).

    The decoder runs one latent frame (``temporal_factor`` pixel frames) at a
    time with a feature cache (:func:`vae_bytes` of the tile, or of the whole
    frame untiled). Its outputs stay alive until the end: untiled, the frame
    list, its concatenation and the clamped copy (3 outputs); tiled
    (``tile``/``stride`` in pixels, W and H), every decoded tile, (3, F,
    tile) in the VAE's dtype, is kept until all are blended, then the
    blended rows, their concatenation and the clamped copy (3 outputs) are
    made while the tiles are still referenced. Found on the meta device
    (issue 16: at 1088x1920x81 the peak is 60 decoded 256-px tiles plus three
    1.9 GB outputs).
    """
    w, h = size
    out = 3 * int(frames) * w * h * elem
    if tile is None:
        work = vae_bytes((w, h), channels, elem, frames=temporal_factor, latent_factor=latent_factor, kernel=kernel)
        return int(max(work + out, 3 * out))
    tw, th = min(tile[0], w), min(tile[1], h)
    sw, sh = (stride or tile)
    lat = latent_factor
    rows = _tile_extents(h // lat, th // lat, max(1, sh // lat))
    cols = _tile_extents(w // lat, tw // lat, max(1, sw // lat))
    tiles = 3 * int(frames) * sum(r * lat for r in rows) * sum(c * lat for c in cols) * elem
    work = vae_bytes((tw, th), channels, elem, frames=temporal_factor, latent_factor=lat, kernel=kernel)
    return int(max(work + tiles, tiles + 3 * out))
