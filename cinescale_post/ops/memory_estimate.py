"""Peak device-memory estimates and a planner that picks settings that fit.

Pure functions (no weights are loaded; torch is imported only to build
modules on the ``meta`` device for parameter counts and to ask CUDA for free
memory). Units: bytes everywhere unless a name says otherwise; sizes are
``(width, height)`` in pixels; ``tokens`` = sequence length N.

What is modelled (peak = resident weights + the largest transient working set
of the phase that is running, never the sum of all phases):

* weights: parameter count x dtype size (:func:`param_count_from_config` builds
  the model from its ``config.json`` on the meta device; :func:`param_count`
  counts a loaded module);
* attention: SDPA memory-efficient/flash kernels hold q, k, v, out:
  ``O(B*H*N*d)``; the math kernel also materialises the score matrix and its
  softmax: ``O(B*H*N*M)`` (:func:`attention_bytes`);
* UNet hidden states: the skip connections kept for the up path plus the
  working set of the widest block (:func:`unet_activation_bytes`);
* DiT hidden states: per-block working set at the stage's token count, divided
  by the context-parallel world size (:func:`dit_activation_bytes`);
* VAE encode/decode: the working set of one tile (the full frame when tiling
  is off) from the VAE's channel widths, plus the assembled output
  (:func:`vae_bytes`);
* classifier-free guidance doubles the denoiser batch when both passes run in
  one batch.

The constants (``*_FACTOR``) are counts of live tensors of the named shape at
the peak, read off the diffusers block implementations and checked against
measured peaks (``benchmarks/bench_memory.py``; ratios in BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

GiB = 2 ** 30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1}
OFFLOADS = ("none", "model", "sequential")
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


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a dtype name ("float16") or a torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return DTYPE_BYTES[name]


def gib(n: float) -> float:
    return round(float(n) / GiB, 3)


# ------------------------------------------------------------------ weights

def param_count(module: Any) -> int:
    """Parameters (and buffers) of a loaded ``torch.nn.Module``."""
    return int(sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers()))


def largest_leaf_params(module: Any) -> int:
    """Parameters of the largest module that holds its own parameters: what
    sequential offload keeps on the device at a time."""
    best = 0
    for m in module.modules():
        n = sum(p.numel() for p in m.parameters(recurse=False))
        best = max(best, n)
    return int(best)


def _read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def param_count_from_config(folder: str | Path) -> tuple[int, int]:
    """(parameters, largest leaf's parameters) of the diffusers model whose
    ``config.json`` is in ``folder``, built on the meta device (no memory, no
    weights). Falls back to the safetensors headers in the folder when the
    class is not a diffusers model (e.g. a transformers text encoder)."""
    folder = Path(folder)
    cfg = _read_config(folder)
    cls_name = cfg.get("_class_name")
    try:
        import diffusers
        import torch

        cls = getattr(diffusers, cls_name) if cls_name else None
        if cls is not None:
            with torch.device("meta"):
                model = cls.from_config(cfg)
            return param_count(model), largest_leaf_params(model)
        if cfg.get("architectures") and cfg.get("model_type"):  # a transformers model (text encoders)
            import transformers

            conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
            with torch.device("meta"):
                model = getattr(transformers, cfg["architectures"][0])(conf)
            return param_count(model), largest_leaf_params(model)
    except Exception:  # noqa: BLE001 - fall back to the weights' headers
        pass
    n, big = safetensors_params(folder)
    return n, big


def safetensors_params(folder: str | Path) -> tuple[int, int]:
    """(elements, largest tensor's elements) of every ``*.safetensors`` under
    ``folder`` (or of one file), read from the JSON headers only."""
    p = Path(folder)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors"))
    total = big = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            e = math.prod(v["shape"])
            total += e
            big = max(big, e)
    return total, big


@dataclass(frozen=True)
class Component:
    """A model part that sits on the device: ``nbytes`` of weights,
    ``largest_bytes`` of its largest layer (sequential offload)."""

    name: str
    nbytes: int
    largest_bytes: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "weights_gib": gib(self.nbytes)}


def component_from_folder(name: str, folder: str | Path, dtype: Any) -> Component | None:
    """A :class:`Component` from a diffusers sub-folder with a config.json
    (None when the folder is absent, e.g. a model saved without text encoder).
    Counts: the safetensors headers when weights are there (no torch import),
    else the config built on the meta device."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    if any(folder.glob("*.safetensors")):  # exact and cheap: the weights' headers, no torch import
        n, big = safetensors_params(folder)
    else:  # configs only (e.g. an architecture to be run with random weights)
        n, big = param_count_from_config(folder)
    b = dtype_bytes(dtype)
    return Component(name, n * b, big * b)


# ------------------------------------------------------------------ activations

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


# ------------------------------------------------------------------ free memory

def free_memory(device: Any = "cpu") -> tuple[int | None, str]:
    """(free bytes, where the number came from) for ``device``:
    ``torch.cuda.mem_get_info`` on CUDA; available RAM on CPU (psutil when
    installed, else /proc/meminfo MemAvailable). ``CINESCALE_FREE_MEMORY``
    (bytes, or e.g. "24GiB"/"80GB") overrides it, to plan for another machine."""
    env = os.environ.get("CINESCALE_FREE_MEMORY")
    if env:
        return parse_bytes(env), "CINESCALE_FREE_MEMORY"
    dev = str(device)
    if dev.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                idx = torch.device(dev).index
                free, _ = torch.cuda.mem_get_info(idx if idx is not None else torch.cuda.current_device())
                return int(free), "torch.cuda.mem_get_info"
        except Exception:  # noqa: BLE001
            pass
        return None, "unknown (no CUDA device here)"
    if dev.startswith("cpu"):
        try:
            import psutil

            return int(psutil.virtual_memory().available), "psutil.virtual_memory().available"
        except ImportError:
            pass
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "/proc/meminfo MemAvailable"
        except OSError:
            pass
    return None, f"unknown for device {dev}"


def parse_bytes(text: str) -> int:
    """"24GiB", "80GB", "512MiB", "1e9" -> bytes."""
    t = str(text).strip().replace(" ", "")
    units = {"TiB": 2 ** 40, "GiB": 2 ** 30, "MiB": 2 ** 20, "KiB": 2 ** 10,
             "TB": 10 ** 12, "GB": 10 ** 9, "MB": 10 ** 6, "KB": 10 ** 3, "B": 1}
    for u, m in units.items():
        if t.endswith(u):
            return int(float(t[: -len(u)]) * m)
    return int(float(t))


# ------------------------------------------------------------------ planner

@dataclass(frozen=True)
class StageDemand:
    """What one stage needs besides weights.

    ``denoise(window)``: denoiser activation bytes for a window of ``window``
    frames (images: 1); ``vae(tile, window)``: VAE working bytes for tile size
    ``tile`` px (None: untiled) and ``window`` frames; ``size``: (W, H)."""

    name: str
    size: tuple[int, int]
    denoise: Callable[[int], int]
    vae: Callable[[int | None, int], int]
    info: dict = field(default_factory=dict)


def _peak(components: dict[str, Component], denoisers: Sequence[str], vae_name: str, stage: StageDemand,
          tile: int | None, window: int, offload: str) -> dict:
    act = stage.denoise(window)
    vae_act = stage.vae(tile, window)
    den_w = sum(components[d].nbytes for d in denoisers if d in components)
    vae_w = components[vae_name].nbytes if vae_name in components else 0
    if offload == "none":
        resident = sum(c.nbytes for c in components.values())
        den_peak, vae_peak = resident + act, resident + vae_act
    elif offload == "model":  # one component on the device at a time (experts too)
        biggest = max((components[d].nbytes for d in denoisers if d in components), default=0)
        den_peak, vae_peak = biggest + act, vae_w + vae_act
    else:  # sequential: one layer at a time
        den_peak = max((components[d].largest_bytes for d in denoisers if d in components), default=0) + act
        vae_peak = (components[vae_name].largest_bytes if vae_name in components else 0) + vae_act
    del den_w
    return {"stage": stage.name, "size": list(stage.size), **stage.info,
            "denoiser_activations_gib": gib(act), "vae_working_gib": gib(vae_act),
            "peak_denoise_gib": gib(den_peak), "peak_vae_gib": gib(vae_peak),
            "peak_gib": gib(max(den_peak, vae_peak)), "_peak": max(den_peak, vae_peak)}


def candidates(tiles: Sequence[int | None], windows: Sequence[int], offloads: Sequence[str]):
    """Settings in order of preference: the full window without offload (every
    tile size, largest first), then model offload; then smaller windows; then
    sequential offload (slowest) from the largest window down."""
    tiles = list(tiles)
    wins = sorted(set(windows), reverse=True)
    fast = [o for o in offloads if o != "sequential"]
    for w in wins:
        for o in fast:
            for t in tiles:
                yield t, w, o
    if "sequential" in offloads:
        for w in wins:
            for t in tiles:
                yield t, w, "sequential"


def plan_memory(components: Sequence[Component], stages: Sequence[StageDemand], free_bytes: int | None, *,
                denoisers: Sequence[str] = ("unet",), vae: str = "vae", tiles: Sequence[int | None] = (None,),
                windows: Sequence[int] = (1,), offloads: Sequence[str] = ("none",), margin: float = 0.9,
                reserve_bytes: int = 512 * 2 ** 20) -> dict:
    """Choose (VAE tile, window frames, offload) so every stage fits.

    ``free_bytes``: free device memory (None: unknown, the first candidate is
    chosen and reported as unchecked); usable = ``free_bytes * margin -
    reserve_bytes`` (allocator fragmentation, CUDA context, small tensors).
    ``tiles`` in px, largest first (None = untiled, put first when allowed);
    ``windows`` in frames; ``offloads`` subset of ("none", "model",
    "sequential"). Returns ``{"fits", "choice", "usable_gib", "free_gib",
    "stages": per-stage estimates at the choice, "weights", "reasoning"}``;
    when nothing fits, ``fits`` is False, the choice is the smallest setting
    and ``reasoning`` says by how much it misses.
    """
    comps = {c.name: c for c in components}
    usable = None if free_bytes is None else max(0, int(free_bytes * margin - reserve_bytes))
    reasoning: list[str] = []
    tried = 0
    best = None
    smallest = None
    for tile, window, offload in candidates(tiles, windows, offloads):
        per = [_peak(comps, denoisers, vae, s, tile, window, offload) for s in stages]
        peak = max((p["_peak"] for p in per), default=0)
        setting = {"vae_tile": tile, "window": window, "offload": offload}
        desc = f"vae_tile={tile or 'off'} window={window} offload={offload}: peak {gib(peak)} GiB"
        if smallest is None or peak < smallest[0]:
            smallest = (peak, setting, per, desc)
        tried += 1
        if usable is None:
            reasoning.append(f"{desc}; free memory unknown, not checked")
            best = (peak, setting, per)
            break
        if peak <= usable:
            reasoning.append(f"{desc} <= {gib(usable)} GiB usable: chosen")
            best = (peak, setting, per)
            break
        reasoning.append(f"{desc} > {gib(usable)} GiB usable")
    fits = best is not None
    if best is None:
        peak, setting, per, desc = smallest
        best = (peak, setting, per)
        reasoning.append(f"nothing fits: the smallest setting ({desc}) needs {gib(peak)} GiB, "
                         f"{gib(peak - usable)} GiB more than the {gib(usable)} GiB usable "
                         f"(free {gib(free_bytes)} GiB x {margin} - {gib(reserve_bytes)} GiB reserve)")
    peak, setting, per = best
    for p in per:
        p.pop("_peak", None)
    if len(reasoning) > 12:  # keep the report readable: first tries, then the outcome
        reasoning = reasoning[:5] + [f"... {len(reasoning) - 7} more settings too large ..."] + reasoning[-2:]
    return {"fits": fits if usable is not None else None, "choice": setting, "peak_gib": gib(peak),
            "free_gib": None if free_bytes is None else gib(free_bytes),
            "usable_gib": None if usable is None else gib(usable),
            "weights": [c.to_dict() for c in components], "stages": per, "reasoning": reasoning,
            "settings_tried": tried}


__all__ = ["Component", "DTYPE_BYTES", "GiB", "StageDemand", "attention_bytes", "candidates",
           "component_from_folder", "dit_activation_bytes", "dit_tokens", "dtype_bytes", "free_memory", "video_vae_bytes",
           "gib", "largest_leaf_params", "param_count", "param_count_from_config", "parse_bytes",
           "plan_memory", "safetensors_params", "unet_activation_bytes", "vae_bytes"]
