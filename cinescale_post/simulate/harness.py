"""Run a backend through the core cascade driver on meta tensors, under the tracker.

Model-side shims only (the driver runs unchanged):

* :func:`meta_safe_scheduler`: the backend's scheduler keeps its timesteps and
  sigmas on the CPU (``set_timesteps(device=...)`` is forced to "cpu"), so
  every index lookup and comparison the loop and the scheduler make stays on
  real numbers; on meta samples ``add_noise``/``scale_noise`` (linear in
  (x0, eps)) are evaluated as ``a x0 + b eps`` with placeholder numbers,
  because diffusers moves the timestep to the sample's device for them, where
  it has no value to look up (and values change nothing that is counted);
* :class:`Instrumented`: wraps ``encode``/``decode``/``predict`` of the
  backend in tracker phases (``vae.encode``, ``vae.decode``, ``denoiser``,
  labelled with the stage's pixel size) and memoises the denoiser: the first
  call per (stage size, input shape, dilation state, guidance) is simulated,
  later identical calls return a fresh output of the same shape and add the
  first call's FLOPs. This is the "one denoiser call per stage x its steps"
  simplification: a meta tensor has no values, so every step of a stage
  costs exactly the same; the scheduler loop itself (blend, re-noise, steps)
  runs for every step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from cinescale_post.simulate.tracker import SimulationTracker


def meta_safe_scheduler(sched: Any) -> Any:
    """Make ``sched`` (a diffusers scheduler) usable with meta latents, in place
    (its class is swapped for a subclass; deep copies keep it)."""
    base = type(sched)
    if getattr(base, "_cinescale_meta_safe", False):
        return sched

    def set_timesteps(self, *args, **kwargs):
        kwargs["device"] = "cpu"
        return base.set_timesteps(self, *args, **kwargs)

    def add_noise(self, original_samples, noise, timesteps):
        if original_samples.device.type != "meta":
            return base.add_noise(self, original_samples, noise, timesteps)
        return _linear(original_samples, noise)

    def scale_noise(self, sample, timestep, noise=None):
        if sample.device.type != "meta":
            return base.scale_noise(self, sample, timestep, noise)
        return _linear(sample, noise)

    attrs = {"set_timesteps": set_timesteps, "_cinescale_meta_safe": True}
    if hasattr(base, "add_noise"):
        attrs["add_noise"] = add_noise
    if hasattr(base, "scale_noise"):
        attrs["scale_noise"] = scale_noise
    sched.__class__ = type(f"MetaSafe{base.__name__}", (base,), attrs)
    return sched


def _linear(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``a x0 + b eps`` with placeholder coefficients: a meta tensor has no
    values, so the schedule's numbers change nothing that is counted (the
    ops, shapes and dtypes are those of diffusers' ``add_noise``)."""
    a = torch.tensor(1.0, dtype=x0.dtype)
    return x0 * a + eps * a


def _label(size: tuple[int, int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def _shape_key(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return ("T", tuple(obj.shape), str(obj.dtype))
    if isinstance(obj, (list, tuple)):
        return tuple(_shape_key(o) for o in obj)
    if isinstance(obj, dict):
        return tuple(sorted((k, _shape_key(v)) for k, v in obj.items()))
    if isinstance(obj, (int, float, bool, str, type(None))):
        return obj
    return type(obj).__name__


class _MemoModule(torch.nn.Module):
    """Stands in for a VAE's ``encoder``/``decoder`` during a simulation: the
    first call per input signature (shapes, dtypes, flags such as Wan's
    ``first_chunk`` and whether its causal cache is filled) runs the real
    module; later calls with the same signature return a fresh tensor of the
    output's shape and add the first call's FLOPs. Tiled VAEs call their
    decoder once per tile (and per latent frame for Wan) with a handful of
    distinct shapes, so the tiles' loop, blending and assembly run in full while
    each distinct decoder call is simulated once. A hit leaves the causal cache
    as the previous real call left it: the same shapes, so the same bytes."""

    def __init__(self, inner: torch.nn.Module, tracker: SimulationTracker):
        super().__init__()
        self.inner = inner
        self._tracker = tracker
        self._memo: dict = {}
        self.real_calls = 0
        self.calls = 0

    def forward(self, *args, **kwargs):
        cache = kwargs.get("feat_cache")
        key = (_shape_key(args), _shape_key({k: v for k, v in kwargs.items() if k not in ("feat_cache", "feat_idx")}),
               None if cache is None else _shape_key(list(cache)))
        hit = self._memo.get(key)
        tr = self._tracker
        self.calls += 1
        if hit is not None:
            flops, out, idx, after, rise = hit
            tr.bump(rise)  # the working set the real call would have needed on top of what lives now
            if kwargs.get("feat_idx") is not None:
                kwargs["feat_idx"][0] = idx  # the cache index the real call would have advanced to
            if cache is not None:  # the cache as the real call leaves it (new tensors, as it makes)
                for i, c in enumerate(after):
                    cache[i] = torch.empty_like(c) if isinstance(c, torch.Tensor) else c
            tr.count_flops(flops)
            return torch.empty_like(out)
        self.real_calls += 1
        before = tr.total_flops
        with tr.probe() as pr:
            out = self.inner(*args, **kwargs)
        rise = pr[2] - pr[1]
        idx = kwargs["feat_idx"][0] if kwargs.get("feat_idx") is not None else None
        with tr.untracked():  # templates only: the memo's own tensors are no device memory
            after = None if cache is None else [torch.empty_like(c) if isinstance(c, torch.Tensor) else c
                                                for c in cache]
            self._memo[key] = (tr.total_flops - before, torch.empty_like(out), idx, after, rise)
        return out


@contextlib.contextmanager
def memoised_vae(vae: Any, tracker: SimulationTracker):
    """Replace ``vae.encoder``/``vae.decoder`` by :class:`_MemoModule` for the
    block (restored afterwards); yields ``{name: memo}`` (call counts)."""
    saved, memos = {}, {}
    try:
        for name in ("encoder", "decoder"):
            mod = getattr(vae, name, None)
            if isinstance(mod, torch.nn.Module):
                saved[name] = mod
                memos[name] = _MemoModule(mod, tracker)
                setattr(vae, name, memos[name])
        yield memos
    finally:
        for name, mod in saved.items():
            setattr(vae, name, mod)


class Instrumented:
    """Tracker phases around a loaded backend's model calls (see module doc).

    ``install()`` replaces the bound methods on the backend instance for the
    duration of a ``with`` block (they are restored afterwards)."""

    def __init__(self, backend: Any, tracker: SimulationTracker, *, latent_factor: int):
        self.backend = backend
        self.tracker = tracker
        self.f = int(latent_factor)
        self.memo: dict[tuple, tuple[int, torch.Tensor]] = {}
        self.calls: dict[str, int] = {}
        self.simulated: dict[str, int] = {}

    def _size_of(self, latent: torch.Tensor) -> str:
        return _label((latent.shape[-1] * self.f, latent.shape[-2] * self.f))

    def _dilation_state(self) -> tuple:
        names = tuple(getattr(self.backend.patch_points, "dilate_convs", ()) or ())
        if not names:
            return ()
        mods = dict(self.backend.denoiser.named_modules())
        return tuple(tuple(getattr(mods[n], "dilation", (1, 1))) for n in names if n in mods)

    @contextlib.contextmanager
    def install(self):
        b = self.backend
        saved = {k: b.__dict__.get(k) for k in ("encode", "decode", "predict", "make_scheduler")}
        enc, dec, pred, mk = b.encode, b.decode, b.predict, b.make_scheduler
        tr = self.tracker

        def encode(pixels, **kw):
            with tr.phase("vae.encode", _label((pixels.shape[-1], pixels.shape[-2]))):
                return enc(pixels, **kw)

        def decode(latents):
            with tr.phase("vae.decode", self._size_of(latents)):
                return dec(latents)

        def predict(x, t, cond, *, guidance):
            stage = self._size_of(x)
            key = (stage, tuple(x.shape), self._dilation_state(), float(guidance))
            self.calls[stage] = self.calls.get(stage, 0) + 1
            hit = self.memo.get(key)
            if hit is not None:
                flops, out, rise = hit
                with tr.phase("denoiser", stage) as rec:
                    rec.calls -= 1  # counted by add_flops below
                    tr.bump(rise)
                tr.add_flops("denoiser", stage, flops)
                return torch.empty_like(out)
            before = tr.total_flops
            with tr.phase("denoiser", stage), tr.probe() as pr:
                out = pred(x, t, cond, guidance=guidance)
            self.simulated[stage] = self.simulated.get(stage, 0) + 1
            with tr.untracked():
                self.memo[key] = (tr.total_flops - before, torch.empty_like(out), pr[2] - pr[1])
            return out

        import inspect

        takes_stage = "stage" in inspect.signature(mk).parameters

        def make_scheduler(stage=None):
            return meta_safe_scheduler(mk(stage=stage) if takes_stage else mk())

        b.encode, b.decode, b.predict = encode, decode, predict
        b.make_scheduler = make_scheduler
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    b.__dict__.pop(k, None)
                else:
                    b.__dict__[k] = v
            self.memo.clear()


__all__ = ["Instrumented", "meta_safe_scheduler"]
