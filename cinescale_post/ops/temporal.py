"""Temporal consistency for image backends: pure ops (issue 7, part 1).

An image model refines every frame of a clip on its own, so whatever it
adds on top of the source changes from frame to frame unless the frames
share what drives it. Two levers live here; both are pure functions of
their inputs (no hidden state, device follows the inputs).

**Flow-warped noise.** The re-noise field of a frame is the field of a *key
frame* carried along the *source's* optical flow to that frame, so added
detail sticks to the content instead of to the screen (shot-level noise) or
changing every frame (per-frame noise).

* Key frames sit on a fixed grid of ``every`` source frames (source index
  0, K, 2K, ...). Frame ``i`` starts from key ``K * (i // K)`` and follows
  the flow forward from it, so a frame's field depends on (seed, its key
  frame, the source pixels between them) and never on which other frames
  are rendered with it: a sub-range renders the same fields as a full
  render, provided the frames from the key frame on are in the job
  (:func:`key_frames` falls back to the first frame of the job's
  contiguous run otherwise, and says so).
* Flow: OpenCV DIS (medium preset) or Farneback on the source frames
  (:func:`optical_flow`), chained from frame to frame
  (:func:`compose_flow`), checked forward-backward (:func:`consistent`),
  shrunk to the latent grid (:func:`shrink_flow`).
* Warping keeps the noise unit Gaussian: each output cell is a bilinear
  combination of four i.i.d. N(0, 1) cells with weights ``w_k``, divided by
  ``sqrt(sum w_k^2)``, which is exactly N(0, 1) again
  (:func:`warp_noise`). Cells whose flow is not trustworthy (occluded,
  disoccluded, out of the frame) take fresh noise instead.

**Low-frequency anchoring.** The render's low frequencies are replaced by
those of the upsampled source: ``out = render + s * (L(source_up) - L(render))``
with ``L`` a Gaussian (or box) low-pass of standard deviation ``sigma``
output pixels and ``s`` in [0, 1] (:func:`anchor_low_frequencies`). The
backends give ``sigma`` in *source* pixels (``anchor_sigma``) and multiply by
the upscale factor: at 1 source pixel the source's own detail up to about a
quarter of its sampling rate is kept from the source and everything the
render adds above the source's resolution is left alone, while colour and
brightness drift (the lowest frequencies) are removed.

Conventions: images are numpy (H, W, 3) float32 (the package boundary) or
torch (B, C, H, W); flows are numpy (H, W, 2) float32 ``(dx, dy)`` in
pixels, such that pixel ``(x, y)`` of the first frame is at
``(x + dx, y + dy)`` in the second (the convention of ``qc.metrics``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

FLOW_METHODS = ("dis", "farneback")
WARP_MODES = ("bilinear", "nearest")
LOWPASS_KINDS = ("gaussian", "box")

# Forward-backward consistency (Sundaram, Brox & Keutzer 2010), as in qc.metrics:
# |f + b|^2 < A (|f|^2 + |b|^2) + B  (pixels^2).
_FB_A, _FB_B = 0.01, 0.5


def _check(name: str, a, shape: str, ok: bool) -> None:
    """One shape check for the module, so messages are uniform."""
    if not ok:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(a.shape)}")


# ---------------------------------------------------------------- key frames


def key_index(index: int, every: int) -> int:
    """Source index of the key frame of source index ``index`` on a grid of ``every``.

    >>> [key_index(i, 4) for i in range(9)]
    [0, 0, 0, 0, 4, 4, 4, 4, 8]
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return every * (index // every)


def key_frames(indices: Sequence[int], every: int) -> dict[int, tuple[int, bool]]:
    """Key frame of every source index in ``indices`` (a job's frames).

    Returns ``{index: (key, on_grid)}``. ``key`` is the grid key frame
    (:func:`key_index`) when every index from it to ``index`` is present
    (``on_grid=True``); otherwise the first index of the contiguous run of
    present indices that ends at ``index`` (``on_grid=False``: the field then
    depends on where the job starts, so a caller should warn). A pure
    function of the *set* of indices: order and repeats do not matter.

    >>> key_frames([8, 9, 10, 11, 12], 4)
    {8: (8, True), 9: (8, True), 10: (8, True), 11: (8, True), 12: (12, True)}
    >>> key_frames([10, 11, 12], 4)[11]
    (10, False)
    """
    have = set(int(i) for i in indices)
    out: dict[int, tuple[int, bool]] = {}
    for i in sorted(have):
        g = key_index(i, every)
        if all(j in have for j in range(g, i + 1)):
            out[i] = (g, True)
        else:
            j = i
            while j - 1 in have and j - 1 >= g:
                j -= 1
            out[i] = (j, False)
    return out


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one use of a frame seed (e.g. ``"renoise"``), so two
    generators seeded from the same frame seed never draw the same numbers.

    >>> derive_seed(7, "renoise") != derive_seed(7, "fresh")
    True
    """
    digest = hashlib.blake2b(f"{int(seed)}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def noise_fields(seed: int, shapes: Sequence[Sequence[int]], *, dtype=torch.float32) -> list[torch.Tensor]:
    """One N(0, 1) tensor per shape, drawn in order from a CPU generator
    seeded with ``seed`` (device-independent bits; move them afterwards).

    >>> [tuple(t.shape) for t in noise_fields(1, [(1, 4, 8, 8), (1, 4, 16, 16)])]
    [(1, 4, 8, 8), (1, 4, 16, 16)]
    """
    g = torch.Generator("cpu").manual_seed(int(seed))
    return [torch.randn(tuple(int(s) for s in shape), generator=g, dtype=torch.float32).to(dtype)
            for shape in shapes]


# ---------------------------------------------------------------- optical flow


def _u8(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float32)
    _check("frame", rgb, "(H, W, 3)", rgb.ndim == 3 and rgb.shape[-1] == 3)
    y = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow from frame ``a`` to frame ``b``: (H, W, 3) x2 -> (H, W, 2) float32.

    ``method``: "dis" (OpenCV DIS, medium preset) or "farneback". Computed
    on 8-bit luma (values above 1 are clipped).

    >>> a = np.zeros((32, 48, 3), np.float32); a[8:20, 8:20] = 1
    >>> optical_flow(a, np.roll(a, 2, axis=1)).shape
    (32, 48, 2)
    """
    import cv2

    if method not in FLOW_METHODS:
        raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}, not {method!r}")
    ga, gb = _u8(a), _u8(b)
    if ga.shape != gb.shape:
        raise ValueError(f"frames differ in size: {ga.shape} vs {gb.shape}")
    if method == "dis" and hasattr(cv2, "DISOpticalFlow_create"):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None).astype(np.float32)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0).astype(np.float32)


def _sample(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``(x + dx, y + dy)`` (bilinear, edges replicated)."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(np.asarray(img, np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape)


def _inside(flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = gx + flow[..., 0], gy + flow[..., 1]
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels of the first frame whose flow is trustworthy: (H, W, 2) x2 -> (H, W) bool.

    ``forward`` goes from frame a to b, ``backward`` from b to a; True where
    following one then the other returns within the Sundaram et al.
    tolerance and the target lies inside the frame.
    """
    _check("forward", forward, "(H, W, 2)", forward.ndim == 3 and forward.shape[-1] == 2)
    _check("backward", backward, "(H, W, 2)", backward.shape == forward.shape)
    back_at = _sample(backward, forward)
    loop = forward + back_at
    ok = (loop ** 2).sum(-1) < _FB_A * ((forward ** 2).sum(-1) + (back_at ** 2).sum(-1)) + _FB_B
    return ok & _inside(forward)


def compose_flow(step: np.ndarray, acc: np.ndarray, step_valid: np.ndarray | None = None,
                 acc_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Chain two flows: ``step`` (frame t -> t-1) then ``acc`` (t-1 -> key).

    (H, W, 2), (H, W, 2), optional (H, W) bool masks -> ((H, W, 2), (H, W) bool):
    ``D(x) = step(x) + acc(x + step(x))``, valid where ``step`` is valid, its
    target lies inside the frame and ``acc`` is valid there.

    >>> s = np.full((4, 5, 2), 0.5, np.float32); a = np.ones((4, 5, 2), np.float32)
    >>> d, v = compose_flow(s, a); float(d[1, 1, 0]), bool(v[1, 1]), bool(v[3, 4])
    (1.5, True, False)
    """
    _check("step", step, "(H, W, 2)", step.ndim == 3 and step.shape[-1] == 2)
    _check("acc", acc, "(H, W, 2)", acc.shape == step.shape)
    d = step + _sample(acc, step)
    v = _inside(step)
    if step_valid is not None:
        v &= step_valid
    if acc_valid is not None:
        v &= _sample(acc_valid.astype(np.float32), step) > 0.5
    return d.astype(np.float32), v


def chain_flows(frames: Sequence[np.ndarray], method: str = "dis") -> list[tuple[np.ndarray, np.ndarray]]:
    """Flow from every frame back to ``frames[0]`` (the key frame), with validity.

    [(H, W, 3)] * n -> [((H, W, 2), (H, W) bool)] * n; entry 0 is zero flow,
    all valid. Entry t is the composition of the one-frame backward flows
    t -> t-1 -> ... -> 0, each checked forward-backward.
    """
    if not frames:
        return []
    h, w = np.asarray(frames[0]).shape[:2]
    acc = np.zeros((h, w, 2), np.float32)
    valid = np.ones((h, w), bool)
    out = [(acc, valid)]
    for t in range(1, len(frames)):
        back = optical_flow(frames[t], frames[t - 1], method)
        fwd = optical_flow(frames[t - 1], frames[t], method)
        acc, valid = compose_flow(back, acc, consistent(back, fwd), valid)
        out.append((acc, valid))
    return out


def shrink_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Flow resized to ``size`` = (width, height), vectors in the new units.

    (H, W, 2) -> (h, w, 2); area average when shrinking, linear otherwise.
    A uniform shift of 8 pixels becomes 1 latent cell at 1/8 size.

    >>> f = np.full((16, 32, 2), 8.0, np.float32)
    >>> shrink_flow(f, (4, 2))[0, 0].tolist()
    [1.0, 1.0]
    """
    import cv2

    _check("flow", flow, "(H, W, 2)", flow.ndim == 3 and flow.shape[-1] == 2)
    h, w = flow.shape[:2]
    W, H = int(size[0]), int(size[1])
    if (W, H) == (w, h):
        return np.asarray(flow, np.float32)
    interp = cv2.INTER_AREA if W <= w and H <= h else cv2.INTER_LINEAR
    out = cv2.resize(np.asarray(flow, np.float32), (W, H), interpolation=interp)
    out[..., 0] *= W / w
    out[..., 1] *= H / h
    return out


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool -> (h, w) bool: a cell is True when at least half its area is."""
    import cv2

    _check("mask", mask, "(H, W)", mask.ndim == 2)
    W, H = int(size[0]), int(size[1])
    if (W, H) == mask.shape[::-1]:
        return np.asarray(mask, bool)
    interp = cv2.INTER_AREA if W <= mask.shape[1] and H <= mask.shape[0] else cv2.INTER_NEAREST
    return cv2.resize(mask.astype(np.float32), (W, H), interpolation=interp) >= 0.5


# ---------------------------------------------------------------- warped noise


def warp_noise(noise: torch.Tensor, flow, valid=None, fresh: torch.Tensor | None = None,
               mode: str = "bilinear") -> torch.Tensor:
    """Carry a unit Gaussian field along a flow, keeping it unit Gaussian.

    noise: (B, C, h, w) i.i.d. N(0, 1) (the key frame's field). flow: (h, w, 2)
    numpy or torch, ``(dx, dy)`` in cells, from the target frame to the key
    frame (cell ``(x, y)`` of the target came from ``(x + dx, y + dy)``).
    valid: optional (h, w) bool. fresh: optional (B, C, h, w) N(0, 1) used
    where ``valid`` is False or the source position lies outside the field
    (without it those cells sample the nearest border cell). Returns
    (B, C, h, w).

    ``"bilinear"``: ``sum_k w_k n_k / sqrt(sum_k w_k^2)`` over the four
    neighbours: exactly N(0, 1) per cell (neighbouring cells become
    correlated where the flow is fractional). ``"nearest"``: the nearest
    cell's value (exact values, duplicated where the flow converges).
    Zero flow returns ``noise`` unchanged.

    >>> n = torch.randn(1, 4, 8, 8)
    >>> bool(torch.equal(warp_noise(n, np.zeros((8, 8, 2), np.float32)), n))
    True
    """
    if mode not in WARP_MODES:
        raise ValueError(f"mode must be one of {', '.join(WARP_MODES)}, not {mode!r}")
    _check("noise", noise, "(B, C, h, w)", noise.ndim == 4)
    b, c, h, w = noise.shape
    fl = torch.as_tensor(np.asarray(flow) if not torch.is_tensor(flow) else flow, dtype=torch.float32,
                         device=noise.device)
    _check("flow", fl, f"({h}, {w}, 2)", tuple(fl.shape) == (h, w, 2))
    gy, gx = torch.meshgrid(torch.arange(h, device=noise.device, dtype=torch.float32),
                            torch.arange(w, device=noise.device, dtype=torch.float32), indexing="ij")
    x, y = gx + fl[..., 0], gy + fl[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    flat = noise.reshape(b, c, h * w)

    def gather(ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        idx = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).reshape(1, 1, h * w).expand(b, c, h * w)
        return torch.gather(flat, 2, idx).reshape(b, c, h, w)

    if mode == "nearest":
        out = gather(torch.round(x).long(), torch.round(y).long())
    else:
        xc, yc = x.clamp(0, w - 1), y.clamp(0, h - 1)
        x0, y0 = torch.floor(xc), torch.floor(yc)
        ax, ay = xc - x0, yc - y0
        x0, y0 = x0.long(), y0.long()
        ws = ((1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay)
        ns = (gather(x0, y0), gather(x0 + 1, y0), gather(x0, y0 + 1), gather(x0 + 1, y0 + 1))
        num = sum(wk.to(noise.dtype) * nk for wk, nk in zip(ws, ns))
        den = torch.sqrt(sum(wk * wk for wk in ws)).to(noise.dtype)
        out = num / den
    keep = inside
    if valid is not None:
        v = torch.as_tensor(np.asarray(valid) if not torch.is_tensor(valid) else valid, device=noise.device)
        _check("valid", v, f"({h}, {w})", tuple(v.shape) == (h, w))
        keep = keep & v.bool()
    if fresh is not None:
        _check("fresh", fresh, f"({b}, {c}, {h}, {w})", tuple(fresh.shape) == (b, c, h, w))
        out = torch.where(keep, out, fresh.to(out.dtype))
    # without fresh noise, a position outside the field was clamped to the
    # border: the cells it blends are still renormalised, so still N(0, 1)
    return out


def flow_noise(key_fields: Sequence[torch.Tensor], flow: np.ndarray, valid: np.ndarray,
               fresh_fields: Sequence[torch.Tensor], mode: str = "bilinear") -> list[torch.Tensor]:
    """Per-stage fields of one frame: every key field warped along ``flow``.

    key_fields / fresh_fields: [(B, C, h_s, w_s)] per stage; flow (H, W, 2)
    and valid (H, W) at *source* resolution, from the frame to its key
    frame. Each stage gets the flow shrunk to its latent grid. Returns
    [(B, C, h_s, w_s)].
    """
    if len(key_fields) != len(fresh_fields):
        raise ValueError(f"{len(key_fields)} key fields but {len(fresh_fields)} fresh fields")
    out = []
    for key, fresh in zip(key_fields, fresh_fields):
        hw = (int(key.shape[-1]), int(key.shape[-2]))
        out.append(warp_noise(key, shrink_flow(flow, hw), shrink_mask(valid, hw), fresh, mode))
    return out


# ---------------------------------------------------------------- low frequencies


def _sigmas(sigma) -> tuple[float, float]:
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else (float(sigma[0]), float(sigma[1]))
    if not (sy > 0 and sx > 0) or math.isinf(sy) or math.isinf(sx):
        raise ValueError(f"sigma must be > 0 and finite, got {sigma!r}")
    return float(sy), float(sx)


def lowpass_taps(sigma: float, kind: str = "gaussian") -> torch.Tensor:
    """1-D low-pass taps, normalised to sum 1: (k,) float32, k odd.

    ``gaussian``: ``exp(-i^2 / (2 sigma^2))`` on ``|i| <= ceil(3 sigma)``.
    ``box``: a box of the same standard deviation, width ``round(sigma *
    sqrt(12))`` made odd (at least 1).

    >>> lowpass_taps(1.0).shape, lowpass_taps(1.0, "box").tolist()
    (torch.Size([7]), [0.3333333432674408, 0.3333333432674408, 0.3333333432674408])
    """
    if kind not in LOWPASS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LOWPASS_KINDS)}, not {kind!r}")
    sy, _ = _sigmas(sigma)
    if kind == "box":
        k = max(1, int(round(sy * math.sqrt(12.0))))
        k += 1 - k % 2
        return torch.full((k,), 1.0 / k)
    r = max(1, int(math.ceil(3.0 * sy)))
    i = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(i * i) / (2.0 * sy * sy))
    return g / g.sum()


def lowpass(x: torch.Tensor, sigma, kind: str = "gaussian") -> torch.Tensor:
    """Separable low-pass over the last two axes, edges replicated.

    x: (B, C, H, W) -> (B, C, H, W); ``sigma``: a number or (sigma_y,
    sigma_x) in pixels. Constant images are left unchanged.

    >>> x = torch.ones(1, 3, 8, 8); bool(torch.allclose(lowpass(x, 2.0), x))
    True
    """
    _check("x", x, "(B, C, H, W)", x.ndim == 4)
    sy, sx = _sigmas(sigma)
    b, c, h, w = x.shape
    xf = x.float().reshape(b * c, 1, h, w)
    ty = lowpass_taps(sy, kind).to(xf.device)
    tx = lowpass_taps(sx, kind).to(xf.device)
    ry, rx = ty.numel() // 2, tx.numel() // 2
    xf = F.conv2d(F.pad(xf, (0, 0, ry, ry), mode="replicate"), ty.view(1, 1, -1, 1))
    xf = F.conv2d(F.pad(xf, (rx, rx, 0, 0), mode="replicate"), tx.view(1, 1, 1, -1))
    return xf.reshape(b, c, h, w).to(x.dtype)


def anchor_low_frequencies(render: torch.Tensor, source_up: torch.Tensor, strength: float, sigma,
                           kind: str = "gaussian") -> torch.Tensor:
    """Replace the render's low frequencies by the upsampled source's.

    render, source_up: (B, C, H, W) (same shape); strength in [0, 1];
    ``sigma`` (number or (sigma_y, sigma_x)) in output pixels. Returns
    ``render + strength * (L(source_up) - L(render))``: 0 leaves the render
    alone, 1 makes ``L(out) = L(source_up)`` up to edge effects.

    >>> r = torch.rand(1, 3, 16, 16); s = torch.rand(1, 3, 16, 16)
    >>> bool(torch.equal(anchor_low_frequencies(r, s, 0.0, 2.0), r))
    True
    """
    _check("render", render, "(B, C, H, W)", render.ndim == 4)
    _check("source_up", source_up, str(tuple(render.shape)), tuple(source_up.shape) == tuple(render.shape))
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    if float(strength) == 0.0:
        return render
    delta = lowpass(source_up.to(render.dtype), sigma, kind) - lowpass(render, sigma, kind)
    return render + float(strength) * delta


__all__ = ["FLOW_METHODS", "LOWPASS_KINDS", "WARP_MODES", "anchor_low_frequencies", "chain_flows", "compose_flow",
           "consistent", "derive_seed", "flow_noise", "key_frames", "key_index", "lowpass", "lowpass_taps",
           "noise_fields", "optical_flow", "shrink_flow", "shrink_mask", "warp_noise"]
