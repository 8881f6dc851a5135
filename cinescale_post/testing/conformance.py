"""The backend conformance suite: :func:`run_backend_conformance`.

One call checks any backend (a plain :class:`~cinescale_post.contracts.engine.Backend`
or a :class:`~cinescale_post.api.ModelAdapter`, run under the core render
driver, whose loaded :class:`~cinescale_post.api.Model` gets the model checks)
against the contract, on whatever model the plan loads (use a tiny one in tests). Every
check runs, failures are collected, and one :class:`ConformanceError` (an
``AssertionError``) lists them all. Re-exported by :mod:`cinescale_post.testing`.

Checks (the names ``skip=`` accepts):

``attributes``  ``id`` kebab-case, ``family``, ``capabilities``, ``frame_rule``, ``temporal``.
``validate``    the plan's stages/options pass ``validate`` again unchanged (a plan's
                values are already normalised) and are JSON-serialisable; an unknown
                option is refused with ``PlanError`` or ignored, never another exception.
``render``      ``render(job)`` gives one (H, W, 3) float32 finite image per frame, at ``job.size``.
``determinism`` the same job twice gives bit-identical images (``seeded`` in the
                report says whether another seed changes them).
``frame-rule``  windows of the two shortest lengths the rule accepts (at most
                ``max_frames``) render that many images; a length it does not accept is
                refused cleanly or rendered (padding is allowed), never a wrong count
                or a crash; an empty window gives ``[]`` or a clean refusal.
``model``       diffusion backends: ``model_info`` is consistent, ``make_scheduler``
                returns independent schedulers, ``encode``/``decode``/``predict`` give
                the documented shapes and dtypes, finite and deterministic values.
``patches``     diffusion backends: every patch point the backend declares (dilated
                convolutions, each registered fusion on ``fusion_attention``, FreeU,
                and the ``extra`` kinds ``"rope"`` and ``"temperature"``) is applied,
                must change the output (or be called), and after removal the
                outputs, parameters, buffers and processors are bit-identical.
``bad-input``   diffusion backends: wrong channel counts, a missing batch axis and
                integer tensors given to ``encode``/``decode``/``predict`` raise a
                clear ``ValueError``/``TypeError``/``RuntimeError`` (or a
                ``CinescaleError``) with a message; an integer tensor that is
                silently accepted is reported as a warning.

"Clean refusal" means one of those exception types with a non-empty message
(an exception the orchestrator can turn into a plugin error naming the plugin).
"""

from __future__ import annotations

import json
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cinescale_post.contracts.errors import CinescaleError, PlanError
from cinescale_post.contracts.media import Frame
from cinescale_post.contracts.engine import Backend, FrameRule, WindowJob

CHECKS = ("attributes", "validate", "render", "determinism", "frame-rule", "model", "patches", "bad-input")
FAMILIES = ("classical", "unet", "dit", "test")
CAPABILITIES = ("v2v", "t2i", "t2v", "i2v")
CLEAN_ERRORS = (ValueError, TypeError, RuntimeError, CinescaleError)
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9.]+)*$")


class ConformanceError(AssertionError):
    """A backend failed one or more checks; the message lists every failure."""


@dataclass
class ConformanceReport:
    """What :func:`run_backend_conformance` found.

    ``checks``: ``[(name, "pass" | "fail" | "skip", detail)]`` in the order run.
    ``warnings``: things that work but deserve a look. ``seeded``: whether a
    different seed changed the rendered pixels (None: not checked).
    """

    backend: str
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seeded: bool | None = None

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return [c for c in self.checks if c[1] == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def passed(self, name: str) -> bool:
        return any(n == name and s == "pass" for n, s, _ in self.checks)

    def __str__(self) -> str:
        lines = [f"conformance of backend {self.backend!r}:"]
        lines += [f"  {s.upper():<4} {n}: {d}" for n, s, d in self.checks]
        lines += [f"  WARN {w}" for w in self.warnings]
        return "\n".join(lines)


class _Fail(Exception):
    """A check's own verdict (as opposed to the backend raising)."""


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise _Fail(message)


def _clean(exc: BaseException) -> bool:
    return isinstance(exc, CLEAN_ERRORS) and bool(str(exc).strip())


def gradient_frames(n: int, size: tuple[int, int] = (64, 64), first: int = 1001, seed: int = 0) -> list[Frame]:
    """``n`` frames of a moving colour gradient with a little noise:
    (H, W, 3) float32 in [0, 1], numbered from ``first``."""
    w, h = size
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    out = []
    for i in range(n):
        rgb = np.stack([(x + 0.05 * i) % 1.0, y, 0.5 * (x + y)], -1)
        rgb = (0.8 * rgb + 0.2 * g.random((h, w, 3))).astype(np.float32)
        out.append(Frame(number=first + i, index=i, rgb=rgb))
    return out


def _seed_for(offset: int = 0) -> Callable[..., int]:
    return lambda number, tile=0: 1000 + 31 * int(number) + tile + offset


class _Runner:
    def __init__(self, backend: Any, report: ConformanceReport, skip: Sequence[str]):
        self.backend, self.report, self.skip = backend, report, set(skip)

    def run(self, name: str, fn: Callable[[], str | None]) -> bool:
        if name in self.skip:
            self.report.checks.append((name, "skip", "skipped by the caller"))
            return False
        try:
            detail = fn() or "ok"
        except _Fail as exc:
            self.report.checks.append((name, "fail", str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - report the backend's crash as a failure
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.report.checks.append((name, "fail", f"raised {tb}"))
            return False
        self.report.checks.append((name, "pass", detail))
        return True


# ------------------------------------------------------------------ generic backend checks


def _check_attributes(b: Any) -> str:
    _expect(isinstance(b, Backend), f"{type(b).__name__} does not subclass cinescale_post.contracts.engine.Backend")
    _expect(isinstance(b.id, str) and bool(_ID.match(b.id)), f"id {b.id!r} is not kebab-case (e.g. 'sdxl-base')")
    _expect(b.family in FAMILIES, f"family {b.family!r} is not one of {FAMILIES}")
    caps = set(b.capabilities)
    _expect(bool(caps) and caps <= set(CAPABILITIES), f"capabilities {sorted(caps)} must be a non-empty subset "
                                                      f"of {CAPABILITIES}")
    _expect(isinstance(b.frame_rule, FrameRule), f"frame_rule {b.frame_rule!r} is not a FrameRule")
    _expect(b.frame_rule.multiple >= 1 and b.frame_rule.offset >= 0, f"frame_rule {b.frame_rule} is not usable")
    _expect(isinstance(b.temporal, bool), f"temporal = {b.temporal!r} must be a bool")
    return f"{b.id} ({b.family}; {', '.join(sorted(caps))}; frames {b.frame_rule.multiple}n+{b.frame_rule.offset})"


def _check_validate(b: Any, plan: Any, size: tuple[int, int]) -> str:
    stages, options = tuple(plan.stages), dict(plan.backend_options)
    source = getattr(plan, "source", None)
    again = b.validate(stages=stages, options=options, size=size, source=source)
    _expect(isinstance(again, tuple) and len(again) == 2, f"validate returned {type(again).__name__}, "
                                                          "expected (stages, options)")
    st, opts = again
    try:
        json.dumps([list(st), dict(opts)])
    except (TypeError, ValueError) as exc:
        raise _Fail(f"validate's result is not JSON-serialisable ({exc})") from None
    _expect([dict(s) for s in st] == [dict(s) for s in stages] and dict(opts) == options,
            "validate changed values it had already normalised (plan.stages/backend_options): "
            f"{list(st)!r}, {dict(opts)!r}")
    try:
        b.validate(stages=stages, options={**options, "zz_no_such_option": 1}, size=size, source=source)
        note = "unknown options are ignored"
    except PlanError:
        note = "unknown options are refused with PlanError"
    except Exception as exc:  # noqa: BLE001
        raise _Fail(f"an unknown option raised {type(exc).__name__}: {exc} (use PlanError, exit code 2)") from None
    return f"idempotent, JSON-serialisable; {note}"


def _check_images(outs: Any, n: int, size: tuple[int, int], what: str) -> None:
    _expect(isinstance(outs, (list, tuple)), f"{what}: render returned {type(outs).__name__}, expected a list")
    _expect(len(outs) == n, f"{what}: render returned {len(outs)} images for {n} frames")
    w, h = size
    for i, img in enumerate(outs):
        _expect(isinstance(img, np.ndarray), f"{what}: image {i} is {type(img).__name__}, not a numpy array")
        _expect(img.shape == (h, w, 3), f"{what}: image {i} has shape {img.shape}, expected {(h, w, 3)}")
        _expect(img.dtype == np.float32, f"{what}: image {i} is {img.dtype}, expected float32")
        _expect(bool(np.isfinite(img).all()), f"{what}: image {i} has NaN or inf values")


def _render(b: Any, frames: list[Frame], size: tuple[int, int], offset: int = 0) -> list:
    return b.render(WindowJob(frames=list(frames), size=size, seed_for=_seed_for(offset)))


def _frame_lengths(rule: FrameRule, max_frames: int) -> tuple[list[int], int | None]:
    ok = [n for n in range(1, max_frames + 1) if rule.accepts(n)][:2]
    bad = next((n for n in range(1, max_frames + 1) if not rule.accepts(n)), None)
    return ok, bad


def _check_frame_rule(b: Any, frames: list[Frame], size: tuple[int, int], max_frames: int, cache: dict) -> str:
    ok, bad = _frame_lengths(b.frame_rule, max_frames)
    _expect(bool(ok), f"frame_rule {b.frame_rule} accepts no length up to {max_frames} frames")
    for n in ok:
        if n not in cache:
            cache[n] = _render(b, frames[:n], size)
        _check_images(cache[n], n, size, f"window of {n} frame(s)")
    notes = [f"renders {', '.join(map(str, ok))} frame(s)"]
    if bad is not None:
        try:
            outs = _render(b, frames[:bad], size)
        except Exception as exc:  # noqa: BLE001
            _expect(_clean(exc), f"a window of {bad} frame(s), which {b.frame_rule} does not accept, raised "
                                 f"{type(exc).__name__}: {exc!s:.200} (refuse with ValueError naming the rule)")
            notes.append(f"refuses {bad} with {type(exc).__name__}")
        else:
            _check_images(outs, bad, size, f"window of {bad} frame(s) (not accepted by the rule)")
            notes.append(f"pads or accepts {bad}")
    try:
        empty = _render(b, [], size)
    except Exception as exc:  # noqa: BLE001
        _expect(_clean(exc), f"an empty window raised {type(exc).__name__}: {exc!s:.200}")
    else:
        _expect(list(empty) == [], f"an empty window returned {len(empty)} images")
    return "; ".join(notes)


# ------------------------------------------------------------------ diffusion backend checks


@dataclass
class _Probe:
    """Inputs shared by the model, patch and bad-input checks."""

    size: tuple[int, int]
    video_frames: int  # pixel frames (1 for image models)
    latent_frames: int
    pixels: Any
    latent_shape: tuple[int, ...]
    x: Any = None
    t: Any = None
    cond: Any = None


def _probe(b: Any, size: tuple[int, int], rule: FrameRule) -> _Probe:
    import torch

    info = b.model_info
    video = int(info.temporal_factor) > 1
    f = rule.largest_at_most(5) if video else 1
    lf = (f - 1) // int(info.temporal_factor) + 1 if video else 1
    shape = tuple(b.latent_shape(size, 1, frames=lf) if video else b.latent_shape(size, 1))
    w, h = size
    g = torch.Generator("cpu").manual_seed(0)
    px_shape = (1, 3, f, h, w) if video else (1, 3, h, w)
    pixels = (torch.rand(px_shape, generator=g) * 2 - 1).to(b.device)
    return _Probe(size=size, video_frames=f, latent_frames=lf, pixels=pixels, latent_shape=shape)


def _check_model(b: Any, p: _Probe, guidance: float) -> str:
    import torch

    info = b.model_info
    lf = int(info.latent_factor)
    _expect(lf >= 1 and int(info.size_multiple) % lf == 0,
            f"model_info: size_multiple {info.size_multiple} must be a multiple of latent_factor {lf}")
    _expect(all(int(v) % lf == 0 for v in info.base_size), f"model_info: base_size {info.base_size} is not a "
                                                           f"multiple of latent_factor {lf}")
    _expect(all(v % int(info.size_multiple) == 0 for v in p.size),
            f"check size {p.size} is not a multiple of size_multiple {info.size_multiple}; pass size=")
    s1, s2 = b.make_scheduler(), b.make_scheduler()
    _expect(s1 is not s2, "make_scheduler returned the same object twice (each stage needs its own)")
    s1.set_timesteps(4)
    s2.set_timesteps(2)
    _expect(len(s1.timesteps) == 4, "make_scheduler's schedulers share state (set_timesteps on one changed the other)")

    z = b.encode(p.pixels, sample=False)
    _expect(tuple(z.shape) == p.latent_shape, f"encode: shape {tuple(z.shape)}, expected latent_shape "
                                              f"{p.latent_shape} for pixels {tuple(p.pixels.shape)}")
    if b.dtype is not None:
        _expect(z.dtype == b.dtype, f"encode: dtype {z.dtype}, expected backend.dtype {b.dtype}")
    _expect(bool(torch.isfinite(z).all()), "encode: NaN or inf in the latents")
    _expect(torch.equal(z, b.encode(p.pixels, sample=False)), "encode(sample=False) is not deterministic")
    za = b.encode(p.pixels, sample=True, generator=torch.Generator("cpu").manual_seed(3))
    zb = b.encode(p.pixels, sample=True, generator=torch.Generator("cpu").manual_seed(3))
    _expect(torch.equal(za, zb), "encode(sample=True) differs for two generators with the same seed")

    px = b.decode(z)
    _expect(tuple(px.shape) == tuple(p.pixels.shape), f"decode: shape {tuple(px.shape)}, expected "
                                                      f"{tuple(p.pixels.shape)}")
    _expect(px.is_floating_point() and bool(torch.isfinite(px).all()), "decode: not finite floating-point pixels")

    sched = b.make_scheduler()
    sched.set_timesteps(4)
    p.t = sched.timesteps[len(sched.timesteps) // 2]
    p.cond = b.condition("a photo of the cat", "blurry", size=p.size, guidance=guidance)
    out = b.predict(z, p.t, p.cond, guidance=guidance)
    _expect(tuple(out.shape) == tuple(z.shape), f"predict: shape {tuple(out.shape)}, expected {tuple(z.shape)}")
    _expect(out.dtype == z.dtype, f"predict: dtype {out.dtype}, expected the latents' {z.dtype}")
    _expect(bool(torch.isfinite(out).all()), "predict: NaN or inf")
    _expect(torch.equal(out, b.predict(z, p.t, p.cond, guidance=guidance)), "predict is not deterministic")
    p.x = z
    return (f"latents {tuple(z.shape)} {str(z.dtype).replace('torch.', '')}, pixels {tuple(px.shape)}, "
            f"predict deterministic")


def _snapshot(model: Any) -> dict:
    import torch

    state = {f"p:{k}": v.detach().clone() for k, v in model.named_parameters()}
    state.update({f"b:{k}": v.detach().clone() for k, v in model.named_buffers()})
    state.update({f"c:{k}": (m.dilation, m.padding) for k, m in model.named_modules()
                  if isinstance(m, torch.nn.Conv2d)})
    procs = getattr(model, "attn_processors", None)
    if procs is not None:
        state.update({f"a:{k}": id(v) for k, v in procs.items()})
    return state


def _same_state(a: dict, b: dict) -> list[str]:
    import torch

    diff = [k for k in a.keys() | b.keys() if k not in a or k not in b]
    for k in a.keys() & b.keys():
        x, y = a[k], b[k]
        same = (x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)) if torch.is_tensor(x) else x == y
        if not same:
            diff.append(k)
    return sorted(diff)


def _patches(b: Any, p: _Probe) -> list[tuple[str, Callable[[], Any], str]]:
    """(label, apply() -> handle, effect) for every declared patch point;
    effect is "output" (must change predict), "calls" (handle.state.calls > 0) or
    "restore" (only removal is checked)."""
    from cinescale_post.contracts.stages import StageSpec, resolve_ladder

    points = b.patch_points
    model = b.denoiser
    out: list[tuple[str, Callable[[], Any], str]] = []
    if points.dilate_convs:
        from cinescale_post.ops.dilation import DilationSpec, apply_dilation

        spec = DilationSpec(tuple(points.dilate_convs), 2)
        out.append((f"dilation x2 on {len(spec.names)} convs", lambda: apply_dilation(model, spec), "output"))
    if points.fusion_attention:
        info = b.model_info
        stage = resolve_ladder([StageSpec(size=p.size)], mode="render", base_size=info.base_size, output=p.size,
                               multiple=info.size_multiple)[0]
        latent_hw = tuple(p.latent_shape[-2:])
        for name, fusion in _fusions(b).items():
            # A fusion across the frames of a batch (cross-frame) is a
            # pass-through for the probe's single frame: check removal only.
            effect = "restore" if fusion.group_fusion else "calls"
            out.append((f"fusion {name!r}",
                        lambda f=fusion: f.apply(b, stage, latent_hw=latent_hw, jitter=None), effect))
    if points.freeu:
        from cinescale_post.ops.freeu import FreeUSpec, apply_freeu

        fspec = FreeUSpec()
        out.append(("FreeU (keyed on the decoder stage)", lambda: apply_freeu(model, fspec), "output"))
    for kind, where in points.extra:
        if kind == "rope":
            from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope

            target = model.get_submodule(where) if isinstance(where, str) and where else model
            out.append(("NTK-RoPE x(1,4,4)", lambda m=target: apply_ntk_rope(m, RopeSpec((1.0, 4.0, 4.0))),
                        "output"))
        elif kind == "temperature":
            from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale

            layers = tuple(where) if isinstance(where, (list, tuple)) else (str(where),)
            tspec = AttentionScaleSpec(factor=1.5, layers=layers)
            out.append(("attention temperature x1.5", lambda: apply_attention_scale(model, tspec), "calls"))
        else:
            out.append((f"extra {kind!r}", None, "unknown"))
    return out


def _fusions(b: Any) -> dict:
    """The built-in fusions (scale fusion, global-only, cross-frame)."""
    from cinescale_post.builtin.fusions import FUSIONS
    from cinescale_post.builtin.temporal_fusions import FUSIONS as GROUP_FUSIONS

    return {**FUSIONS, **GROUP_FUSIONS}


def _check_patches(b: Any, p: _Probe, guidance: float, report: ConformanceReport) -> str:
    _expect(p.x is not None, "needs the model check to pass first")
    model = b.denoiser
    before = _snapshot(model)
    base = b.predict(p.x, p.t, p.cond, guidance=guidance)
    done, fails = [], []
    for label, apply, effect in _patches(b, p):
        if apply is None:
            report.warnings.append(f"patch point {label} is not a kind the core knows; not checked")
            continue
        try:
            _check_patch(b, p, guidance, model, before, base, label, apply, effect)
        except _Fail as exc:
            fails.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - the backend's (or the op's) crash
            fails.append(f"{label}: raised {type(exc).__name__}: {exc!s:.200}")
        else:
            done.append(label)
    _expect(not fails, "; ".join(fails) + (f" (passed: {'; '.join(done)})" if done else ""))
    return "applied and removed exactly: " + ("; ".join(done) if done else "nothing declared")


def _check_patch(b, p, guidance, model, before, base, label, apply, effect) -> None:
    import torch

    with apply() as handle:
        out = b.predict(p.x, p.t, p.cond, guidance=guidance)
    if effect == "output":
        _expect(not torch.equal(out, base), f"{label}: applying it does not change predict's output "
                                            "(do the declared names reach the forward pass?)")
    elif effect == "calls" and hasattr(handle, "state") and hasattr(handle.state, "calls"):
        _expect(handle.state.calls > 0, f"{label}: its processors were never called during predict "
                                        "(do the declared patterns match the attention the model runs?)")
    after = b.predict(p.x, p.t, p.cond, guidance=guidance)
    _expect(torch.equal(after, base), f"{label}: predict differs after the handle was removed "
                                      f"(max |diff| {float((after - base).abs().max()):.3g})")
    changed = _same_state(before, _snapshot(model))
    _expect(not changed, f"{label}: removal left the model changed: {', '.join(changed[:5])}")


def _refused(call: Callable[[], Any], what: str, failures: list[str], warn_only: bool = False,
             warnings: list[str] | None = None) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        if not _clean(exc):
            failures.append(f"{what} raised {type(exc).__name__}: {exc!s:.160} (raise ValueError/TypeError "
                            "with the expected layout)")
        return
    if warn_only and warnings is not None:
        warnings.append(f"{what} was accepted silently")
    else:
        failures.append(f"{what} was accepted (expected a clear ValueError/TypeError)")


def _check_bad_input(b: Any, p: _Probe, guidance: float, report: ConformanceReport) -> str:
    import torch

    _expect(p.x is not None, "needs the model check to pass first")
    px, z = p.pixels, p.x
    c = z.shape[1]
    fails: list[str] = []
    _refused(lambda: b.encode(px[:, :1], sample=False), f"encode of 1-channel pixels {tuple(px[:, :1].shape)}", fails)
    _refused(lambda: b.encode(px[0], sample=False), f"encode of pixels without a batch axis {tuple(px[0].shape)}",
             fails)
    _refused(lambda: b.decode(torch.cat([z, z[:, :1]], 1)), f"decode of {c + 1}-channel latents", fails)
    _refused(lambda: b.predict(torch.cat([z, z[:, :1]], 1), p.t, p.cond, guidance=guidance),
             f"predict of {c + 1}-channel latents", fails)
    _refused(lambda: b.predict(z[0], p.t, p.cond, guidance=guidance),
             f"predict of latents without a batch axis {tuple(z[0].shape)}", fails)
    _refused(lambda: b.encode(((px + 1) * 127.5).to(torch.uint8), sample=False), "encode of uint8 pixels", fails,
             warn_only=True, warnings=report.warnings)
    _refused(lambda: b.predict(z.round().to(torch.int64), p.t, p.cond, guidance=guidance),
             "predict of int64 latents", fails, warn_only=True, warnings=report.warnings)
    _expect(not fails, "; ".join(fails))
    return "wrong shapes are refused with a clear error"


# ------------------------------------------------------------------ entry point


def run_backend_conformance(backend: Any, *, plan: Any, frames: Sequence[Any] | None = None,
                            size: tuple[int, int] | None = None, check_size: tuple[int, int] | None = None,
                            max_frames: int = 9, guidance: float = 5.0, load: bool = True,
                            skip: Sequence[str] = ()) -> ConformanceReport:
    """Check ``backend`` against the protocol; raise :class:`ConformanceError`
    listing every failed check, or return the :class:`ConformanceReport`.

    :param plan: what ``backend.load(plan)`` gets (see
        :func:`cinescale_post.testing.make_test_plan`); keep its stages tiny
        (2-4 steps). ``None`` skips ``validate`` and needs ``load=False``.
    :param frames: source frames for the render checks: ``Frame`` objects or
        (H, W, 3) float32 arrays, at least ``max_frames`` of them (default:
        a 64x64 gradient).
    :param size: (width, height) of rendered windows (default: the plan's
        output size, else twice the frame size).
    :param check_size: (width, height) in pixels for the tensor-level checks
        of diffusion backends (default: the model's base size; pass something
        small for models whose base size is large).
    :param max_frames: longest window tried by the frame-rule check.
    :param load: call ``backend.load(plan)`` first (``False`` for a backend
        already set up in memory).
    :param skip: names of checks not to run (see the module docstring).
    """
    unknown = sorted(set(skip) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {CHECKS}")
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.contracts.model import ModelAdapter
    from cinescale_post.render.driver import RenderDriver

    if isinstance(backend, ModelAdapter):  # a model adapter runs under the core driver, as in a render
        backend = RenderDriver(backend, resolve=builtin_resolve)
    report = ConformanceReport(backend=str(getattr(backend, "id", type(backend).__name__)))
    run = _Runner(backend, report, skip)
    run.run("attributes", lambda: _check_attributes(backend))
    if load:
        if plan is None:
            raise ValueError("load=True needs a plan")
        backend.load(plan)
    if frames is None:
        frames = gradient_frames(max_frames)
    frames = [f if isinstance(f, Frame) else Frame(number=1001 + i, index=i, rgb=np.asarray(f, np.float32))
              for i, f in enumerate(frames)]
    if len(frames) < max_frames:
        raise ValueError(f"give at least max_frames={max_frames} frames, got {len(frames)}")
    if size is None:
        out = getattr(plan, "output", None)
        h0, w0 = frames[0].rgb.shape[:2]
        size = (int(out.width), int(out.height)) if out is not None else (2 * w0, 2 * h0)
    size = (int(size[0]), int(size[1]))

    if plan is not None:
        run.run("validate", lambda: _check_validate(backend, plan, size))
    else:
        report.checks.append(("validate", "skip", "no plan"))
    cache: dict[int, list] = {}
    n0 = _frame_lengths(backend.frame_rule, max_frames)[0][-1:] or [1]

    def render() -> str:
        cache[n0[0]] = _render(backend, frames[:n0[0]], size)
        _check_images(cache[n0[0]], n0[0], size, f"window of {n0[0]} frame(s)")
        return f"{n0[0]} frame(s) -> {len(cache[n0[0]])} x {cache[n0[0]][0].shape} float32"

    rendered = run.run("render", render)

    def determinism() -> str:
        _expect(rendered, "needs the render check to pass first")
        again = _render(backend, frames[:n0[0]], size)
        _expect(all(np.array_equal(a, b) for a, b in zip(cache[n0[0]], again)),
                "the same window and seeds rendered twice gave different pixels")
        other = _render(backend, frames[:1], size, offset=1)
        report.seeded = not np.array_equal(cache[n0[0]][0], other[0])
        return "bit-identical; " + ("another seed changes the pixels" if report.seeded else "seed-independent")

    run.run("determinism", determinism)
    run.run("frame-rule", lambda: _check_frame_rule(backend, frames, size, max_frames, cache))

    m = backend.model if isinstance(backend, RenderDriver) else None
    if m is not None:
        probe: list[_Probe] = []

        def model() -> str:
            p = _probe(m, tuple(check_size or m.model_info.base_size), backend.frame_rule)
            probe.append(p)
            return _check_model(m, p, guidance)

        run.run("model", model)
        run.run("patches", lambda: _check_patches(m, _need(probe), guidance, report))
        run.run("bad-input", lambda: _check_bad_input(m, _need(probe), guidance, report))
    else:
        for name in ("model", "patches", "bad-input"):
            report.checks.append((name, "skip", "not a model adapter"))
    if report.failures:
        raise ConformanceError(str(report))
    return report


def _need(probe: list[_Probe]) -> _Probe:
    _expect(bool(probe) and probe[0].x is not None, "needs the model check to pass first")
    return probe[0]


__all__ = ["CHECKS", "ConformanceError", "ConformanceReport", "gradient_frames", "run_backend_conformance"]
