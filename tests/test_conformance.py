"""The backend conformance kit (``cinescale_post.testing.run_backend_conformance``):
every backend this repository ships passes it, and each of its checks catches
the defect it is there for."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.engine import FrameRule
from cinescale_post.testing import (
    ConformanceError,
    fresh_host,
    gradient_frames,
    make_test_plan,
    run_backend_conformance,
)

# One refine stage, 2 steps: the cascade runs for real (re-noise, restart,
# dilation, scale fusion) in a fraction of a second on the tiny models.
REFINE = ({"size": "output", "steps": 2, "restart_step": 1, "dilate_tau": 1, "guidance": 5.0},)
ALL = ("attributes", "validate", "render", "determinism", "frame-rule", "model", "patches", "bad-input")


def _passed(report, names=ALL):
    assert [n for n, s, _ in report.checks if s == "pass"] == [n for n in ALL if n in names], str(report)


# ------------------------------------------------------------------ what ships passes


def test_draft_backend_conforms(host):
    b = host.backend("draft")
    report = run_backend_conformance(b, plan=make_test_plan(b, options={"upscaler": "lanczos"}, size=(96, 64)))
    _passed(report, ALL[:5])
    assert report.seeded is False  # a classical resize has no seed


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
@pytest.mark.parametrize("backend_id", ["test-noise", "test-temporal", "test-slow", "test-identity"])
def test_test_backends_conform(host, backend_id):
    b = copy.copy(host.backend(backend_id))
    b.delay = 0.0  # test-slow: no sleeping here
    size = (64, 64) if backend_id == "test-identity" else (96, 64)  # identity keeps the source size
    report = run_backend_conformance(b, plan=make_test_plan(b, size=size))
    _passed(report, ALL[:5])
    assert report.seeded is (backend_id != "test-identity")


@pytest.fixture(scope="module")
def tiny_unet():
    from cinescale_post.testing import model_driver
    from .tiny_unet import tiny_unet_model

    return model_driver(tiny_unet_model(), adapter_id="tiny-unet")


def test_tiny_unet_test_backend_follows_the_diffusion_protocol(tiny_unet):
    # it drives the cascade in the core's tests and has no render of its own
    report = run_backend_conformance(tiny_unet, plan=None, load=False, skip=("render", "determinism", "frame-rule"))
    _passed(report, ("attributes", "model", "patches", "bad-input"))
    assert "FreeU" in dict((n, d) for n, _, d in report.checks)["patches"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance-models")


def test_sdxl_backend_conforms(models):
    pytest.importorskip("cinescale_sdxl")
    from cinescale_sdxl.tiny import save_tiny_sdxl
    from cinescale_sdxl import plugin

    b = fresh_host(plugin).backend("sdxl")
    plan = make_test_plan(b, model=str(save_tiny_sdxl(models / "sdxl")), stages=REFINE, size=(128, 128))
    report = run_backend_conformance(b, plan=plan, max_frames=3)
    _passed(report)
    assert "FreeU" in str(report) and "dilation x2 on 9 convs" in str(report)


def test_example_backend_conforms(models):
    pytest.importorskip("cinescale_example")
    from cinescale_example import plugin
    from cinescale_post.testing.tiny import save_tiny_sd15

    b = fresh_host(plugin).backend("example-sd15")
    plan = make_test_plan(b, model=str(save_tiny_sd15(models / "sd15")), stages=REFINE, size=(128, 128))
    _passed(run_backend_conformance(b, plan=plan, max_frames=3))


def test_wan_backend_conforms(models):
    if importlib.util.find_spec("cinescale_wan") is None:
        pytest.skip("cinescale-wan is not installed")
    try:
        from cinescale_wan.tiny import save_tiny_wan
        from cinescale_wan import plugin
    except ImportError as exc:  # the plugin is being written; a broken import is not this test's business
        pytest.skip(f"cinescale_wan does not import: {exc}")
    b = fresh_host(plugin).backend("wan")
    stages = ({"size": "output", "steps": 2, "restart_step": 1, "shift": 11.0},)
    plan = make_test_plan(b, model=str(save_tiny_wan(models / "wan")), stages=stages, size=(64, 64),
                          options={"num_frames": 5, "max_sequence_length": 16})
    _passed(run_backend_conformance(b, plan=plan, check_size=(64, 64), max_frames=5))


# ------------------------------------------------------------------ each check can fail


def _fails(backend, plan, check, match, **kw):
    with pytest.raises(ConformanceError) as e:
        run_backend_conformance(backend, plan=plan, **kw)
    line = next((x for x in str(e.value).splitlines() if x.strip().startswith(f"FAIL {check}:")), None)
    assert line is not None, str(e.value)
    assert match in line, line
    return str(e.value)


class _Broken:
    """A NoiseBackend with one defect switched on."""

    @staticmethod
    def make(host, **defects):
        b = copy.copy(host.backend("test-noise"))
        for k, v in defects.items():
            setattr(b, k, v)
        return b


def test_attribute_defects_are_reported(host):
    b = _Broken.make(host, id="Test_Noise")
    _fails(b, make_test_plan(b), "attributes", "kebab-case")
    b = _Broken.make(host, capabilities=frozenset({"upscale"}))
    _fails(b, make_test_plan(b), "attributes", "capabilities")


def test_validate_defects_are_reported(host):
    b = _Broken.make(host)
    plan = make_test_plan(b, options={"strength": 1})

    def bumps(*, stages, options, size, source):  # not idempotent
        return stages, {**options, "strength": options.get("strength", 0) + 1}

    b.validate = bumps
    _fails(b, plan, "validate", "already normalised")

    def key_error(*, stages, options, size, source):
        if "zz_no_such_option" in options:
            raise KeyError("zz_no_such_option")
        return stages, options

    b.validate = key_error
    _fails(b, plan, "validate", "use PlanError")


def test_render_shape_count_and_dtype_defects_are_reported(host):
    b = _Broken.make(host)
    base = type(b).render
    b.render = lambda job: base(b, job)[:-1] if len(job.frames) > 1 else base(b, job)
    _fails(b, make_test_plan(b), "render", "returned 1 images for 2 frames")
    b.render = lambda job: [im.astype(np.float64) for im in base(b, job)]
    _fails(b, make_test_plan(b), "render", "expected float32")
    b.render = lambda job: [im[:-1] for im in base(b, job)]
    _fails(b, make_test_plan(b), "render", "has shape")
    b.render = lambda job: [im * np.nan for im in base(b, job)]
    _fails(b, make_test_plan(b), "render", "NaN")


def test_nondeterminism_is_reported(host):
    b = _Broken.make(host)
    rng = np.random.default_rng()
    b.render = lambda job: [np.full((job.size[1], job.size[0], 3), rng.random(), np.float32) for _ in job.frames]
    _fails(b, make_test_plan(b), "determinism", "different pixels")


def test_frame_rule_defects_are_reported(host):
    b = _Broken.make(host, frame_rule=FrameRule(4, 1))
    base = type(b).render

    def crash(job):
        if len(job.frames) % 4 != 1:
            raise IndexError("list index out of range")
        return base(b, job)

    b.render = crash
    _fails(b, make_test_plan(b), "frame-rule", "raised IndexError")

    def wrong_count(job):  # "pads" to 4n+1 and forgets to drop the padding
        n = len(job.frames)
        return base(b, job) + base(b, job)[: (-(n - 1)) % 4]

    b.render = wrong_count
    _fails(b, make_test_plan(b), "frame-rule", "images for 2 frames")


def test_clean_refusal_of_a_length_passes(host):
    b = _Broken.make(host, frame_rule=FrameRule(4, 1))
    base = type(b).render

    def refuse(job):
        if len(job.frames) % 4 != 1:
            raise PlanError(f"{len(job.frames)} frames: the window must have 4n+1 frames")
        return base(b, job)

    b.render = refuse
    report = run_backend_conformance(b, plan=make_test_plan(b))
    assert "refuses 2 with PlanError" in str(report)


def _model_only(backend):
    return run_backend_conformance(backend, plan=None, load=False, skip=("render", "determinism", "frame-rule"))


def test_model_defects_are_reported(tiny_unet, monkeypatch):
    m = tiny_unet.model
    enc = type(m).encode
    monkeypatch.setattr(m, "encode", lambda px, **kw: enc(m, px, **kw).double())
    msg = _fails(tiny_unet, None, "model", "expected backend.dtype", load=False,
                 skip=("render", "determinism", "frame-rule"))
    assert "SKIP render" in msg
    monkeypatch.undo()
    monkeypatch.setattr(m, "make_scheduler", lambda stage=None: m.scheduler)
    _fails(tiny_unet, None, "model", "the same object twice", load=False, skip=("render", "determinism", "frame-rule"))


def test_patch_defects_are_reported(tiny_unet, monkeypatch):
    from cinescale_post.api import PatchPoints
    import cinescale_post.ops.dilation as dilation
    from cinescale_post.ops.handles import Handle

    m = tiny_unet.model
    points = m.patch_points
    skip = ("render", "determinism", "frame-rule")
    # a pattern that matches no attention processor
    monkeypatch.setattr(type(m), "patch_points",
                        property(lambda self: PatchPoints(fusion_attention=("*attn9.processor",))))
    _fails(tiny_unet, None, "patches", "fusion 'scale-fusion': raised KeyError", load=False, skip=skip)
    # a dilation whose handle forgets to restore the convolutions
    monkeypatch.setattr(type(m), "patch_points",
                        property(lambda self: PatchPoints(dilate_convs=points.dilate_convs)))
    real, leaked = dilation.apply_dilation, []

    def leaky(model, spec):
        leaked.append(real(model, spec))  # applied; the handle returned restores nothing
        return Handle("leaky dilation")

    monkeypatch.setattr(dilation, "apply_dilation", leaky)
    try:
        _fails(tiny_unet, None, "patches", "after the handle was removed", load=False, skip=skip)
    finally:
        for h in leaked:
            h.remove()
    # a dilation that never reaches the model
    monkeypatch.setattr(dilation, "apply_dilation", lambda model, spec: Handle("no-op dilation"))
    _fails(tiny_unet, None, "patches", "does not change predict's output", load=False, skip=skip)
    monkeypatch.undo()
    _passed(_model_only(tiny_unet), ("attributes", "model", "patches", "bad-input"))


def test_silent_reshaping_is_a_bad_input_failure(tiny_unet, monkeypatch):
    m = tiny_unet.model
    enc = type(m).encode

    def lenient(px, **kw):  # "helpfully" turns grey pixels into RGB
        if px.shape[1] == 1:
            px = px.expand(-1, 3, -1, -1)
        return enc(m, px, **kw)

    monkeypatch.setattr(m, "encode", lenient)
    _fails(tiny_unet, None, "bad-input", "1-channel pixels", load=False, skip=("render", "determinism", "frame-rule"))


def test_kit_arguments_are_checked(host):
    b = host.backend("test-noise")
    with pytest.raises(ValueError, match="unknown check"):
        run_backend_conformance(b, plan=make_test_plan(b), skip=("speed",))
    with pytest.raises(ValueError, match="max_frames"):
        run_backend_conformance(b, plan=make_test_plan(b), frames=[f.rgb for f in gradient_frames(2)])
    with pytest.raises(PlanError):  # make_test_plan validates like plan.build
        make_test_plan(host.backend("draft"), options={"upscaler": "nope"})


def test_fresh_host_is_isolated():
    import cinescale_post.testing.backends as testing_backends

    bare = fresh_host()
    assert "test-noise" not in bare.backends() and "draft" in bare.backends()
    assert all(r["kind"] == "builtin" for r in bare.describe())
    with_tb = fresh_host(testing_backends)
    assert "test-noise" in with_tb.backends()
    assert not hasattr(with_tb.backend("test-noise"), "host")  # the host writes nothing into plugin objects
    assert not {r["name"] for r in fresh_host(entrypoints=True, env={"CINESCALE_LOAD_PLUGINS": ""}).describe()
                if r["kind"] == "entrypoint"}
