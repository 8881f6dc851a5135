"""QC knows colour (issue 15): a render made in OCIO mode is compared in the
plate's colour space, through the render's own display transform, not as
if a log or linear plate were video."""

import numpy as np
import OpenEXR
import PyOpenColorIO as ocio

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.media.ocio import DEFAULT_CONFIG, Converter
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
import cinescale_post.qc.metrics as m
from cinescale_post.qc.analyse import drift_grid
from cinescale_post.qc.pipeline import run_qc

from ..helpers import write_preset


def _exr(path, rgb):
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"RGB": np.ascontiguousarray(rgb, np.float32)}) as f:
        f.write(str(path))


def _read(path):
    with OpenEXR.File(str(path)) as f:
        return f.channels()["RGB"].pixels.astype(np.float32)


def test_ocio_render_is_compared_through_its_display_transform(qc_host, tmp_path):
    g = np.random.default_rng(5)
    lin = np.clip(0.18 * np.exp(g.normal(0, 0.6, (48, 64, 3))), 0, None).astype(np.float32)
    lin[:12, :12] = 12.0  # highlights far above display white
    log = lin.copy()
    ocio.Config.CreateFromFile(DEFAULT_CONFIG).getProcessor("ACEScg", "ACEScct").getDefaultCPUProcessor().applyRGB(log)
    src = tmp_path / "in"
    src.mkdir()
    for n in (1001, 1002):
        _exr(src / f"plate.{n}.exr", log)
    preset = write_preset(tmp_path / "p.toml", backend="test-identity", codec="exr", width=64, height=48,
                          options='pixel = "float"\ncompression = "zip"', audio=False)
    with open(preset, "a") as fh:
        fh.write('\n[colour]\nmode = "ocio"\ninput = "ACEScct"\n')
    out = tmp_path / "out" / "o.####.exr"
    p = plan_mod.build(str(preset), host=qc_host, input=str(src / "plate.####.exr"), output=str(out))
    run(p, qc_host, NullSink())
    # grade the second output frame down one stop in linear: a visible change
    darker = _read(tmp_path / "out" / "o.1002.exr")
    cfg = ocio.Config.CreateFromFile(DEFAULT_CONFIG)
    cfg.getProcessor("ACEScct", "ACEScg").getDefaultCPUProcessor().applyRGB(darker)
    darker *= 0.5
    cfg.getProcessor("ACEScg", "ACEScct").getDefaultCPUProcessor().applyRGB(darker)
    _exr(tmp_path / "out" / "o.1002.exr", darker)

    r = run_qc(str(out), host=qc_host, out_dir=str(tmp_path / "qc"), plots=False, html=False, sheets=0,
               contact=0).report
    assert "after OCIO ACEScct -> display" in r["metrics"]["colour_drift"]
    same, graded = r["frames"]
    assert same["drift_mean"] < 0.05  # the identity render: no drift
    # the graded frame's drift is what a viewer sees: the same transform on both sides
    conv = Converter(dict(p.colour))
    size = drift_grid(64, 48)
    want, _ = m.colour_drift(conv.to_display(m.shrink(darker, size)), conv.to_display(m.shrink(log, size)))
    assert abs(graded["drift_mean"] - want) < 0.01  # the report rounds
    assert graded["drift_mean"] > 5.0
