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
from typing import Any, Callable, Sequence

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.media import Frame
from cinescale_post.contracts.engine import Backend, FrameRule, WindowJob
from cinescale_post.testing.conformance_report import (CLEAN_ERRORS, ConformanceError, ConformanceReport, Fail,
                                                        Runner, clean, expect)
from cinescale_post.testing.model_checks import (Probe, check_bad_input, check_model, check_patches, make_probe,
                                                 need_probe)

CHECKS = ("attributes", "validate", "render", "determinism", "frame-rule", "model", "patches", "bad-input")
FAMILIES = ("classical", "unet", "dit", "test")
CAPABILITIES = ("v2v", "t2i", "t2v", "i2v")
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9.]+)*$")


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


# ------------------------------------------------------------------ generic backend checks


def _check_attributes(b: Any) -> str:
    expect(isinstance(b, Backend), f"{type(b).__name__} does not subclass cinescale_post.contracts.engine.Backend")
    expect(isinstance(b.id, str) and bool(_ID.match(b.id)), f"id {b.id!r} is not kebab-case (e.g. 'sdxl-base')")
    expect(b.family in FAMILIES, f"family {b.family!r} is not one of {FAMILIES}")
    caps = set(b.capabilities)
    expect(bool(caps) and caps <= set(CAPABILITIES), f"capabilities {sorted(caps)} must be a non-empty subset "
                                                      f"of {CAPABILITIES}")
    expect(isinstance(b.frame_rule, FrameRule), f"frame_rule {b.frame_rule!r} is not a FrameRule")
    expect(b.frame_rule.multiple >= 1 and b.frame_rule.offset >= 0, f"frame_rule {b.frame_rule} is not usable")
    expect(isinstance(b.temporal, bool), f"temporal = {b.temporal!r} must be a bool")
    return f"{b.id} ({b.family}; {', '.join(sorted(caps))}; frames {b.frame_rule.multiple}n+{b.frame_rule.offset})"


def _check_validate(b: Any, plan: Any, size: tuple[int, int]) -> str:
    stages, options = tuple(plan.stages), dict(plan.backend_options)
    source = getattr(plan, "source", None)
    again = b.validate(stages=stages, options=options, size=size, source=source)
    expect(isinstance(again, tuple) and len(again) == 2, f"validate returned {type(again).__name__}, "
                                                          "expected (stages, options)")
    st, opts = again
    try:
        json.dumps([list(st), dict(opts)])
    except (TypeError, ValueError) as exc:
        raise Fail(f"validate's result is not JSON-serialisable ({exc})") from None
    expect([dict(s) for s in st] == [dict(s) for s in stages] and dict(opts) == options,
            "validate changed values it had already normalised (plan.stages/backend_options): "
            f"{list(st)!r}, {dict(opts)!r}")
    try:
        b.validate(stages=stages, options={**options, "zz_no_such_option": 1}, size=size, source=source)
        note = "unknown options are ignored"
    except PlanError:
        note = "unknown options are refused with PlanError"
    except Exception as exc:  # noqa: BLE001
        raise Fail(f"an unknown option raised {type(exc).__name__}: {exc} (use PlanError, exit code 2)") from None
    return f"idempotent, JSON-serialisable; {note}"


def _check_images(outs: Any, n: int, size: tuple[int, int], what: str) -> None:
    expect(isinstance(outs, (list, tuple)), f"{what}: render returned {type(outs).__name__}, expected a list")
    expect(len(outs) == n, f"{what}: render returned {len(outs)} images for {n} frames")
    w, h = size
    for i, img in enumerate(outs):
        expect(isinstance(img, np.ndarray), f"{what}: image {i} is {type(img).__name__}, not a numpy array")
        expect(img.shape == (h, w, 3), f"{what}: image {i} has shape {img.shape}, expected {(h, w, 3)}")
        expect(img.dtype == np.float32, f"{what}: image {i} is {img.dtype}, expected float32")
        expect(bool(np.isfinite(img).all()), f"{what}: image {i} has NaN or inf values")


def _render(b: Any, frames: list[Frame], size: tuple[int, int], offset: int = 0) -> list:
    return b.render(WindowJob(frames=list(frames), size=size, seed_for=_seed_for(offset)))


def _frame_lengths(rule: FrameRule, max_frames: int) -> tuple[list[int], int | None]:
    ok = [n for n in range(1, max_frames + 1) if rule.accepts(n)][:2]
    bad = next((n for n in range(1, max_frames + 1) if not rule.accepts(n)), None)
    return ok, bad


def _check_frame_rule(b: Any, frames: list[Frame], size: tuple[int, int], max_frames: int, cache: dict) -> str:
    ok, bad = _frame_lengths(b.frame_rule, max_frames)
    expect(bool(ok), f"frame_rule {b.frame_rule} accepts no length up to {max_frames} frames")
    for n in ok:
        if n not in cache:
            cache[n] = _render(b, frames[:n], size)
        _check_images(cache[n], n, size, f"window of {n} frame(s)")
    notes = [f"renders {', '.join(map(str, ok))} frame(s)"]
    if bad is not None:
        try:
            outs = _render(b, frames[:bad], size)
        except Exception as exc:  # noqa: BLE001
            expect(clean(exc), f"a window of {bad} frame(s), which {b.frame_rule} does not accept, raised "
                                 f"{type(exc).__name__}: {exc!s:.200} (refuse with ValueError naming the rule)")
            notes.append(f"refuses {bad} with {type(exc).__name__}")
        else:
            _check_images(outs, bad, size, f"window of {bad} frame(s) (not accepted by the rule)")
            notes.append(f"pads or accepts {bad}")
    try:
        empty = _render(b, [], size)
    except Exception as exc:  # noqa: BLE001
        expect(clean(exc), f"an empty window raised {type(exc).__name__}: {exc!s:.200}")
    else:
        expect(list(empty) == [], f"an empty window returned {len(empty)} images")
    return "; ".join(notes)


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
    run = Runner(backend, report, skip)
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
        expect(rendered, "needs the render check to pass first")
        again = _render(backend, frames[:n0[0]], size)
        expect(all(np.array_equal(a, b) for a, b in zip(cache[n0[0]], again)),
                "the same window and seeds rendered twice gave different pixels")
        other = _render(backend, frames[:1], size, offset=1)
        report.seeded = not np.array_equal(cache[n0[0]][0], other[0])
        return "bit-identical; " + ("another seed changes the pixels" if report.seeded else "seed-independent")

    run.run("determinism", determinism)
    run.run("frame-rule", lambda: _check_frame_rule(backend, frames, size, max_frames, cache))

    m = backend.model if isinstance(backend, RenderDriver) else None
    if m is not None:
        probe: list[Probe] = []

        def model() -> str:
            p = make_probe(m, tuple(check_size or m.model_info.base_size), backend.frame_rule)
            probe.append(p)
            return check_model(m, p, guidance)

        run.run("model", model)
        run.run("patches", lambda: check_patches(m, need_probe(probe), guidance, report))
        run.run("bad-input", lambda: check_bad_input(m, need_probe(probe), guidance, report))
    else:
        for name in ("model", "patches", "bad-input"):
            report.checks.append((name, "skip", "not a model adapter"))
    if report.failures:
        raise ConformanceError(str(report))
    return report


__all__ = ["CHECKS", "CLEAN_ERRORS", "ConformanceError", "ConformanceReport", "gradient_frames",
           "run_backend_conformance"]
