"""Golden output hashes: a fixed set of renders and generations whose pixels
must not change unless a change *means* to change pictures (issue 13: the
backend/driver redesign must keep every picture bit-identical).

Each case runs the real pipeline in-process (``plan.build`` -> orchestrator
or ``run_generate`` -> writers) on tiny random-weight models saved to disk,
then digests the decoded pixels of every output file (EXR: the stored
channel arrays; movies: PyAV ``rgb48le`` frames), so header metadata such as
versions or dates never enters it. ``tests/golden.py`` says how a digest is
compared: bit identity on the machine kind that recorded it, thumbnails
within a tolerance on another CPU (``CINESCALE_GOLDEN_EXACT=1``: bit
identity only).

Regenerate entries after an intentional picture change::

    CINESCALE_GOLDEN_UPDATE=1 .venv/bin/python -m pytest -q tests/test_golden_outputs.py -k sdxl
    CINESCALE_GOLDEN_UPDATE=1 .venv/bin/python -m pytest -q -m slow tests/test_golden_outputs.py

(``CINESCALE_GOLDEN_UPDATE=1`` rewrites the entries of the cases that ran; the
others are kept) and say in the commit which pictures changed and why.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from . import golden as gd

GOLDEN = Path(__file__).with_name("golden_outputs.json")
UPDATE = os.environ.get("CINESCALE_GOLDEN_UPDATE", "") not in ("", "0")

pytest.importorskip("torch")
pytest.importorskip("diffusers")


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cinescale_post.testing.tiny import save_tiny_sd15
    from cinescale_sdxl.tiny import save_tiny_sdxl
    from cinescale_wan.tiny import save_tiny_wan

    root = tmp_path_factory.mktemp("golden-models")
    return {"sdxl": str(save_tiny_sdxl(root / "sdxl")), "sd15": str(save_tiny_sd15(root / "sd15")),
            "wan": str(save_tiny_wan(root / "wan-t2v", layout="t2v")),
            "wan-i2v": str(save_tiny_wan(root / "wan-i2v", layout="i2v"))}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from cinescale_post.testing import make_clip

    root = tmp_path_factory.mktemp("golden-media")
    import cv2

    still = np.zeros((32, 32, 3), np.uint8)
    still[:, :, 0] = np.linspace(0, 255, 32, dtype=np.uint8)[None]
    still[8:24, 8:24, 1] = 200
    cv2.imwrite(str(root / "first.png"), still[..., ::-1])
    return {"clip": str(make_clip(root / "in.mov", frames=3, size=(64, 48), rate=Fraction(24), content="gradient")),
            "clip6": str(make_clip(root / "in6.mov", frames=6, size=(32, 32), rate=Fraction(24),
                                   content="gradient")),
            "image": str(root / "first.png")}


@pytest.fixture(scope="module")
def golden():
    data = gd.load(GOLDEN)
    yield data
    if UPDATE:
        gd.save(GOLDEN, data)


def _host(env=None):
    from cinescale_post.pipeline.host import Host

    return Host(env={"CINESCALE_LOAD_PLUGINS": "sdxl,wan,example"} if env is None else env)


def _render(out: Path, preset: str, inp: str, overrides: list[str], *, model=None, executor="local",
            executor_options=None, handles=0, prompt="a test"):
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import make_sink
    from cinescale_post.orchestrator.render_job import run

    host = _host()
    p = plan_mod.build(preset, host=host, input=inp, output=str(out), overrides=tuple(overrides), model=model,
                       prompt=prompt, handles=handles, device="cpu")
    summary = run(p, host, make_sink("none"), executor=executor, executor_options=executor_options)
    assert summary.status == "finished"


def _generate(out: Path, preset: str, overrides: list[str], *, model, size, prompt="a lighthouse"):
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.generate import run_generate
    from cinescale_post.orchestrator.progress import make_sink

    host = _host()
    p = plan_mod.build(preset, host=host, output=str(out), overrides=tuple(overrides), model=model, prompt=prompt,
                       mode="generate", size=size, device="cpu")
    assert run_generate(p, host, make_sink("none"))


def _check(golden, name: str, folder: Path) -> None:
    got = gd.digest(folder)
    gd.record(name, got)
    assert got["frames"] > 0, f"{name}: no output under {folder}"
    if UPDATE or name not in golden:
        if not UPDATE:
            pytest.fail(f"golden case {name!r} has no entry; run with CINESCALE_GOLDEN_UPDATE=1 to record {got}")
        golden[name] = got
        return
    why = gd.difference(got, golden[name])
    assert why is None, (f"pictures of golden case {name!r} changed: {why}; if intended, regenerate with "
                         "CINESCALE_GOLDEN_UPDATE=1 and say so in the commit")


# ----------------------------------------------------------------- cases

SDXL_TINY = ["dtype=float32", "output.codec=exr", "output.width=128", "output.height=96", "stages.0.steps=3",
             "stages.0.dilate_tau=2"]
WAN_TINY = ["dtype=float32", "output.codec=exr", "backend_options.max_sequence_length=16"]


def test_draft_whole_and_chunked(tmp_path, media, golden):
    common = ["output.width=128", "output.height=96"]
    _render(tmp_path / "exr" / "f.####.exr", "uhd-exr-draft", media["clip"], common)
    _check(golden, "draft-exr", tmp_path / "exr")
    _render(tmp_path / "whole" / "m.mov", "uhd-draft", media["clip"], common + ["output.chunk=0"])
    _render(tmp_path / "chunked" / "m.mov", "uhd-draft", media["clip"], common + ["output.chunk=2"])
    _check(golden, "draft-prores-whole", tmp_path / "whole")
    _check(golden, "draft-prores-chunked", tmp_path / "chunked")


@pytest.mark.parametrize("name, extra", [
    ("sdxl-refine", []),
    ("sdxl-refine-anchor-off", ["backend_options.anchor_lowfreq=0.0"]),
    ("sdxl-refine-frame-noise", ["backend_options.noise=\"frame\""]),
    ("sdxl-refine-flow-crossframe", ["backend_options.noise=\"flow\"", "backend_options.cross_frame=true",
                                     "backend_options.key_every=2"]),
])
def test_sdxl_refine(tmp_path, models, media, golden, name, extra):
    _render(tmp_path / "o" / "f.####.exr", "sdxl-uhd-refine", media["clip"], SDXL_TINY + extra,
            model=models["sdxl"])
    _check(golden, name, tmp_path / "o")


def test_sdxl_refine_chunked_movie(tmp_path, models, media, golden):
    tiny = [s for s in SDXL_TINY if not s.startswith("output.codec")]
    _render(tmp_path / "o" / "m.mov", "sdxl-uhd-refine", media["clip"], tiny + ["output.chunk=2"],
            model=models["sdxl"])
    _check(golden, "sdxl-refine-prores-chunked", tmp_path / "o")


def test_sdxl_still(tmp_path, models, golden):
    _generate(tmp_path / "o" / "still.exr", "sdxl-2k-still",
              ["dtype=float32", "output.codec=exr", "stages.0.steps=2", "stages.1.steps=2",
               "stages.1.restart_step=1", "stages.1.dilate_tau=1"], model=models["sdxl"], size=(128, 128))
    _check(golden, "sdxl-still", tmp_path / "o")


def test_wan_t2v(tmp_path, models, golden):
    _generate(tmp_path / "o" / "v.####.exr", "wan-2k-t2v",
              WAN_TINY + ["backend_options.num_frames=5", "stages.0.size=[32, 32]", "stages.0.steps=3"],
              model=models["wan"], size=(32, 32))
    _check(golden, "wan-t2v", tmp_path / "o")


def test_wan_i2v(tmp_path, models, media, golden):
    _generate(tmp_path / "o" / "v.####.exr", "wan-2k-t2v",
              ["dtype=float32", "output.codec=exr", "backend_options.num_frames=5", "stages.0.size=[32, 32]",
               "stages.0.steps=2", f"backend_options.image=\"{media['image']}\""],
              model=models["wan-i2v"], size=(32, 32))
    _check(golden, "wan-i2v", tmp_path / "o")


@pytest.mark.parametrize("name, extra", [
    ("wan-refine-windows", ["window.size=5", "window.overlap=2"]),
    ("wan-refine-whole", ["window.size=9", "window.overlap=0"]),
])
def test_wan_refine(tmp_path, models, media, golden, name, extra):
    _render(tmp_path / "o" / "f.####.exr", "wan-uhd-refine", media["clip6"],
            WAN_TINY + ["output.width=64", "output.height=64", "stages.0.steps=3", "stages.0.restart_step=1"]
            + extra, model=models["wan"])
    _check(golden, name, tmp_path / "o")


def test_example_plugin_still_and_refine(tmp_path, models, media, golden):
    _generate(tmp_path / "still" / "s.exr", "example-sd15-1k-still",
              ["dtype=float32", "stages.0.steps=2", "stages.1.steps=2", "stages.1.restart_step=1",
               "stages.1.dilate_tau=1"], model=models["sd15"], size=(128, 128))
    _check(golden, "example-still", tmp_path / "still")
    _render(tmp_path / "refine" / "f.####.exr", "example-sd15-hd-refine", media["clip"],
            ["dtype=float32", "output.codec=exr", "output.width=128", "output.height=96", "stages.0.steps=3",
             "stages.0.dilate_tau=2"], model=models["sd15"])
    _check(golden, "example-refine", tmp_path / "refine")


@pytest.mark.slow
def test_sdxl_refine_on_ray_matches_its_entry(tmp_path, models, media, golden):
    """The Ray executor (one task per chunk, plugins loaded in the workers
    from entry points) gives the same pictures as the local chunked render."""
    ray = pytest.importorskip("ray")
    tiny = [s for s in SDXL_TINY if not s.startswith("output.codec")]
    os.environ["CINESCALE_LOAD_PLUGINS"] = "sdxl"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        _render(tmp_path / "o" / "m.mov", "sdxl-uhd-refine", media["clip"], tiny + ["output.chunk=2"],
                model=models["sdxl"], executor="ray")
    finally:
        ray.shutdown()
        os.environ.pop("CINESCALE_LOAD_PLUGINS", None)
    _check(golden, "sdxl-refine-prores-chunked", tmp_path / "o")
