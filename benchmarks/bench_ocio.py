"""OCIO colour mode: exactness of the transform chain and its cost.

Three measurements (issue 15):

* **chain alone**: a synthetic scene-linear HDR plate (ACEScg, 0..100, one
  row in seven shifted to -50..50, rows of in-range values, saturated
  colours outside Rec.709) through ``Converter.round_trip`` (plate -> working
  -> shaper -> inverse -> carry/blend -> plate) with no model in between, in
  ACEScg and in log encodings of the same plate. Max relative error
  (``|out - in| / max(|in|, 1e-3)``), against half-float's 2**-11.
* **through the tiny SDXL** (random weights; its backend clamps to [0, 1]):
  an ACEScg half EXR with highlights 4 / 16 / 100, negatives and mid-grey,
  rendered by the real CLI with ``sdxl-uhd-refine-aces``. Max relative error
  of pixels whose plate value is above 1.0, split into those past the
  blend band (linear > 2.37: carried, must be half precision) and those in
  1.0..2.37 (the model's change fades in there, by design); mid-grey change.
* **overhead**: the same render (``sdxl-uhd-refine``, 4 frames, 64x48 ->
  128x96, 3 steps) in video mode and with ``--set colour.mode=ocio --set
  colour.input=ACEScg``, interleaved, whole-process CPU seconds of the CLI
  (``resource.getrusage(RUSAGE_CHILDREN)``), best of ``--repeat``; target
  OCIO / video <= 1.1.

Usage::

    python benchmarks/bench_ocio.py            # ~2 min on 2 shared cores
    python benchmarks/bench_ocio.py --repeat 5

Last line: ``ocio: chain max rel <x>; sdxl carried max rel <y>; cpu ratio <r>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HALF = 2.0 ** -11


def hdr_plate(h=540, w=960, seed=0) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = (g.random((h, w, 3)) * 100.0).astype(np.float32)
    x[::3] *= 0.01
    x[1::7] -= 50.0
    x[2::5, ::2] = [0.6, 0.02, 0.01]
    return x


def chain_alone() -> dict:
    import PyOpenColorIO as ocio

    from cinescale_post.media.ocio import DEFAULT_CONFIG, Converter, validate

    cfg = ocio.Config.CreateFromFile(DEFAULT_CONFIG)
    plate = hdr_plate()
    out = {}
    for space in ("ACEScg", "ACES2065-1", "ACEScct", "ARRI LogC4", "S-Log3 S-Gamut3.Cine", "Log3G10 REDWideGamutRGB"):
        x = plate.copy()
        cfg.getProcessor("ACEScg", space).getDefaultCPUProcessor().applyRGB(x)
        conv = Converter(validate({"mode": "ocio", "input": space}, "bench"))
        t0 = resource.getrusage(resource.RUSAGE_SELF)
        back = conv.round_trip(x)
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        rel = np.abs(back - x) / np.maximum(np.abs(x), 1e-3)
        out[space] = (float(rel.max()), (t1.ru_utime + t1.ru_stime) - (t0.ru_utime + t0.ru_stime))
    return out


def _write_plate(path: Path, frames: int) -> np.ndarray:
    import OpenEXR

    g = np.random.default_rng(3)
    rgb = 0.18 + 0.03 * g.standard_normal((48, 64, 3))
    rgb[0:16, 0:16], rgb[0:16, 24:40], rgb[0:16, 48:64] = 4.0, 16.0, 100.0
    rgb[32:48, 0:16] = -0.5
    rgb[32:48, 24:40] = 1.6  # inside the blend band
    half = rgb.astype(np.float16)
    path.mkdir(parents=True, exist_ok=True)
    for n in range(1001, 1001 + frames):
        with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                          {"RGB": half}) as f:
            f.write(str(path / f"plate.{n}.exr"))
    return half.astype(np.float32)


def _render(src: str, out: str, model: str, preset: str, *extra: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    args = [sys.executable, "-m", "cinescale_post", "render", src, "-o", out, "--preset", preset, "--model", model,
            "--prompt", "a test", "--progress", "none", "--set", "dtype=float32", "--set", "output.codec=exr",
            "--set", "output.width=128", "--set", "output.height=96", "--set", "output.options.pixel=half",
            "--set", "stages.0.steps=3", "--set", "stages.0.dilate_tau=2", "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)
    if r.returncode:
        raise SystemExit(r.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def through_sdxl(repeat: int, frames: int) -> dict:
    import OpenEXR

    from cinescale_sdxl.tiny import save_tiny_sdxl

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = str(save_tiny_sdxl(d / "tiny-sdxl"))
        plate = _write_plate(d / "in", frames)
        src = str(d / "in" / "plate.####.exr")
        cpu = {"video": [], "ocio": []}
        # the shipped preset, for the pictures; then the same preset in both modes, interleaved, for the cost
        _render(src, str(d / "ocio" / "o.####.exr"), model, "sdxl-uhd-refine-aces")
        for _ in range(repeat):
            cpu["video"].append(_render(src, str(d / "video" / "o.####.exr"), model, "sdxl-uhd-refine"))
            cpu["ocio"].append(_render(src, str(d / "ocio2" / "o.####.exr"), model, "sdxl-uhd-refine",
                                       "--set", "colour.mode=ocio", "--set", "colour.input=ACEScg"))
        with OpenEXR.File(str(d / "ocio" / "o.1001.exr")) as f:
            out = f.channels()["RGB"].pixels.astype(np.float32)
        with OpenEXR.File(str(d / "video" / "o.1001.exr")) as f:
            video = f.channels()["RGB"].pixels.astype(np.float32)
    up = np.repeat(np.repeat(plate, 2, 0), 2, 1)  # nearest 2x: compare patch interiors only
    edge = np.zeros(up.shape[:2], bool)
    for r0, r1, c0, c1 in ((0, 16, 0, 16), (0, 16, 24, 40), (0, 16, 48, 64), (32, 48, 0, 16), (32, 48, 24, 40)):
        edge[2 * r0 + 3:2 * r1 - 3, 2 * c0 + 3:2 * c1 - 3] = True
    rel = np.abs(out - up) / np.maximum(np.abs(up), 1e-3)
    carried = edge & ((up.max(-1) > 2.37) | (up.min(-1) < -0.02))
    band = edge & (up.max(-1) > 1.0) & (up.max(-1) <= 2.37)
    grey = np.abs(out[52:92, 36:46] - up[52:92, 36:46]).mean()
    return {"carried": float(rel[carried].max()), "band": float(rel[band].max()), "grey_change": float(grey),
            "max_out": float(out.max()), "max_video": float(video.max()),
            "cpu_video": min(cpu["video"]), "cpu_ocio": min(cpu["ocio"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=4)
    a = ap.parse_args()
    print(f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    chain = chain_alone()
    print("chain alone, 960x540 HDR plate (0..100, negatives, out of gamut), no model:")
    for space, (err, cpu) in chain.items():
        print(f"  {space:26s} max rel error {err:.2e} ({err / HALF:.4f} of half precision), {cpu:.2f} CPU-s")
    s = through_sdxl(a.repeat, a.frames)
    print("tiny SDXL (clamps), ACEScg EXR, sdxl-uhd-refine-aces:")
    print(f"  carried (> 2.37 or < -0.02) max rel error {s['carried']:.2e}; in the blend band (1.0..2.37) "
          f"{s['band']:.2e} (the model's change, faded); mid-grey mean |change| {s['grey_change']:.4f}")
    print(f"  max out {s['max_out']:.2f} (video mode: {s['max_video']:.3f})")
    ratio = s["cpu_ocio"] / s["cpu_video"]
    print(f"  whole-process CPU, {a.frames} frames, best of {a.repeat}: video {s['cpu_video']:.2f} s, "
          f"ocio {s['cpu_ocio']:.2f} s")
    worst = max(e for e, _ in chain.values())
    print(f"ocio: chain max rel {worst:.2e}; sdxl carried max rel {s['carried']:.2e}; cpu ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
