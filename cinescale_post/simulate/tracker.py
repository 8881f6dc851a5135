"""Counting FLOPs and live activation bytes of real-size models on the meta device.

:class:`SimulationTracker` is entered around a simulated run. It stacks two
torch modes:

* a ``TorchFunctionMode`` that routes mask-free (and masked)
  ``F.scaled_dot_product_attention`` calls to the fused flash (memory-
  efficient) kernels, which have meta implementations and return the output
  without the N x M score matrix. On the meta device SDPA would otherwise take
  the math path and materialise the scores, which a GPU run with flash /
  memory-efficient attention never does (TINY_MODELS.md, addendum);
* a ``TorchDispatchMode`` that sees every aten op and

  - adds its FLOPs with the formulas of ``torch.utils.flop_counter``
    (``flop_registry``: matmuls, convolutions, attention kernels; elementwise
    ops count 0, as in torch's own counter);
  - counts a tensor's storage once, when an op creates it, and frees it when
    the last Python tensor that refers to it dies (``weakref.finalize``).
    Storages are keyed by their ``StorageImpl`` address
    (``untyped_storage()._cdata``: stable while the storage lives; a view or an
    in-place result shares its input's key and allocates nothing). Storages
    made before the tracker (weights, buffers) are never counted: the
    activation figures exclude weights, which are added from parameter counts.

Everything is attributed to the innermost :meth:`phase` (a component such as
``"denoiser"``, ``"vae.decode"``, ``"text_encoder"``, and a stage label), and
each phase records its FLOPs and the peak of live bytes while it ran (live
bytes include what was alive when it started: inputs, the latent, cached
conditioning), i.e. what the device holds besides the weights at that peak.

Validated against a real CPU run in ``tests/simulate`` (the tracker's peak of a
real fp32 module run equals the sum of the bytes of its alive outputs, and the
meta figures equal the CPU figures of the same ops).
"""

from __future__ import annotations

import contextlib
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

_SDPA = F.scaled_dot_product_attention
# composite aten ops whose decompositions contain the matmuls/convolutions torch's
# flop counter counts
_COUNTED_COMPOSITES = frozenset(f"aten.{n}" for n in (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "_convolution_mode",
    "linear", "matmul", "einsum", "bilinear", "tensordot", "chain_matmul", "addbmm", "addmv", "mv", "dot", "inner",
    "outer", "ger", "vdot", "scaled_dot_product_attention", "_scaled_dot_product_attention_math"))


def fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False):
    """``F.scaled_dot_product_attention`` through the fused kernels: flash for
    mask-free calls, memory-efficient with a bias for masked ones (boolean
    masks become additive biases). q: (..., H, N, d), k/v: (..., H, M, d)."""
    q, k, v = query, key, value
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(rep, dim=-3)
        v = v.repeat_interleave(rep, dim=-3)
    lead = q.shape[:-3]
    if q.ndim != 4:  # the kernels take (B, H, N, d)
        q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))
    if attn_mask is None:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False,
                                                                 scale=scale)[0]
    else:
        bias = attn_mask
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=q.dtype, device=q.device).masked_fill(~bias, float("-inf"))
        bias = bias.to(q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, False, dropout_p, is_causal,
                                                                     scale=scale)[0]
    return out.reshape(*lead, *out.shape[-3:]) if len(lead) != 1 else out


class _FusedAttention(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            return fused_attention(*args, **kwargs)
        return func(*args, **kwargs)


@dataclass
class PhaseRecord:
    """FLOPs and memory of one (component, stage) phase, summed over its calls."""

    component: str
    stage: str
    calls: int = 0
    flops: int = 0
    peak_live: int = 0  # bytes alive at this phase's peak (all live activations)
    peak_rise: int = 0  # peak minus what was alive when the call started
    by_op: dict = field(default_factory=lambda: defaultdict(int))

    def to_dict(self) -> dict:
        return {"component": self.component, "stage": self.stage, "calls": self.calls, "flops": self.flops,
                "peak_live_bytes": self.peak_live, "peak_rise_bytes": self.peak_rise}


class SimulationTracker(TorchDispatchMode):
    """Count FLOPs and live tensor bytes of everything run inside it.

    Use as a context manager; wrap model calls in :meth:`phase`. ``route_sdpa``
    routes SDPA to the fused kernels (default, what GPU runs use).
    ``multiplier`` (see :meth:`scaled`) lets a simulated call stand for several
    identical calls for FLOPs (memory peaks do not add up).
    """

    def __init__(self, *, route_sdpa: bool = True, explain: bool = False):
        super().__init__()
        self.explain = explain
        self.peak_contents: list = []  # with explain: (bytes, op, shape, dtype) alive at the peak
        self.route_sdpa = route_sdpa
        self.live = 0
        self.peak = 0
        self.total_flops = 0
        self.records: dict[tuple[str, str], PhaseRecord] = {}
        self._storages: dict[int, list[int]] = {}  # key -> [nbytes, referents]
        self._owners: dict[int, int] = {}  # id(tensor) -> storage key
        self._stack: list[list] = []  # [record, live at entry, peak in this call]
        self._mult = 1
        self._paused = 0
        self._op = ""
        self._function_mode: Any = None

    # ------------------------------------------------------------ context

    def __enter__(self):
        if self.route_sdpa:
            self._function_mode = _FusedAttention()
            self._function_mode.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            if self._function_mode is not None:
                self._function_mode.__exit__(*exc)
                self._function_mode = None

    @contextlib.contextmanager
    def phase(self, component: str, stage: str = "") -> Iterator[PhaseRecord]:
        """Attribute what runs inside to ``(component, stage)``; nested phases
        also raise the peaks of the phases around them."""
        key = (component, stage)
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = PhaseRecord(component, stage)
        rec.calls += self._mult
        entry = [rec, self.live, self.live]
        self._stack.append(entry)
        try:
            yield rec
        finally:
            self._stack.pop()
            rec.peak_live = max(rec.peak_live, entry[2])
            rec.peak_rise = max(rec.peak_rise, entry[2] - entry[1])

    @contextlib.contextmanager
    def untracked(self) -> Iterator[None]:
        """Tensors made inside are not counted (the simulator's own templates)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    @contextlib.contextmanager
    def scaled(self, n: int) -> Iterator[None]:
        """FLOPs and call counts inside count ``n`` times (one simulated
        denoiser call standing for ``n`` identical ones)."""
        old = self._mult
        self._mult = old * int(n)
        try:
            yield
        finally:
            self._mult = old

    def add_flops(self, component: str, stage: str, flops: int, calls: int = 1) -> None:
        """Count ``calls`` more calls of ``(component, stage)`` costing
        ``flops`` each without running them (a memoised identical call)."""
        key = (component, stage)
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = PhaseRecord(component, stage)
        n = int(flops) * int(calls) * self._mult
        rec.calls += int(calls) * self._mult
        rec.flops += n
        self.total_flops += n
        for frame in self._stack:
            if frame[0] is not rec:
                frame[0].flops += n

    @contextlib.contextmanager
    def probe(self) -> Iterator[list]:
        """Measure a block without a record: yields ``[_, live at entry, peak]``."""
        entry = [PhaseRecord("probe", ""), self.live, self.live]
        self._stack.append(entry)
        try:
            yield entry
        finally:
            self._stack.pop()

    def bump(self, rise: int) -> None:
        """A simulated call's transient: the peaks see ``live + rise`` (nothing is allocated)."""
        v = self.live + int(rise)
        self.peak = max(self.peak, v)
        for frame in self._stack:
            frame[2] = max(frame[2], v)

    def count_flops(self, flops: int) -> None:
        """Add ``flops`` to the running phases (work simulated by a memo hit)."""
        n = int(flops) * self._mult
        self.total_flops += n
        for frame in self._stack:
            frame[0].flops += n

    # ------------------------------------------------------------ accounting

    def _alloc(self, t: torch.Tensor, inputs: set) -> None:
        if self._paused:
            return
        oid = id(t)
        if oid in self._owners:
            return
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse / nested / undefined: not modelled
            return
        key = st._cdata
        if key in inputs and key not in self._storages:
            return  # a view of, or in-place result on, a storage made before the tracker
        entry = self._storages.get(key)
        if entry is None:
            nbytes = int(st.nbytes())
            entry = self._storages[key] = [nbytes, 0, (self._op, tuple(t.shape), str(t.dtype))] if self.explain \
                else [nbytes, 0]
            self.live += nbytes
            if self.live > self.peak:
                self.peak = self.live
                if self.explain:
                    self.peak_contents = sorted(((e[0], *e[2]) for e in self._storages.values()), reverse=True)
            for frame in self._stack:
                if self.live > frame[2]:
                    frame[2] = self.live
        entry[1] += 1
        self._owners[oid] = key
        weakref.finalize(t, self._release, oid, key)

    def _release(self, oid: int, key: int) -> None:
        self._owners.pop(oid, None)
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._storages[key]
            self.live -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if str(packet) in _COUNTED_COMPOSITES:
            # Under inference_mode composite ops (conv2d, linear, matmul...) reach the mode
            # whole; run their decomposition inside the mode (as torch's flop counter does)
            # so the ops inside are seen and counted. Only these: other decompositions may
            # read values (.item()), which meta tensors do not have.
            TorchDispatchMode.__enter__(self)
            try:
                r = func.decompose(*args, **kwargs)
            finally:
                TorchDispatchMode.__exit__(self, None, None, None)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        self._op = str(packet)
        if packet in flop_registry:
            n = int(flop_registry[packet](*args, **kwargs, out_val=out)) * self._mult
            self.total_flops += n
            for frame in self._stack:
                frame[0].flops += n
            if self._stack:
                self._stack[-1][0].by_op[str(packet)] += n
        flat_in, _ = tree_flatten((args, kwargs))
        inputs = set()
        for a in flat_in:
            if isinstance(a, torch.Tensor):
                try:
                    inputs.add(a.untyped_storage()._cdata)
                except (RuntimeError, NotImplementedError):
                    pass
        flat_out, _ = tree_flatten(out)
        for t in flat_out:
            if isinstance(t, torch.Tensor):
                self._alloc(t, inputs)
        return out

    # ------------------------------------------------------------ results

    def summary(self) -> dict:
        return {"flops": self.total_flops, "peak_live_bytes": self.peak, "live_bytes": self.live,
                "phases": [r.to_dict() for r in self.records.values()]}


__all__ = ["PhaseRecord", "SimulationTracker", "fused_attention"]
