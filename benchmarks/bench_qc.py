"""What `cinescale qc` costs per frame, by step, without media I/O.

Times the per-frame work of ``qc.analyse.measure`` on in-memory arrays (a
textured source panning 2 px per frame, its Lanczos upscale as the render):
two DIS flows and the consistency mask at source size, the flow and mask
scaled to the output, two warps at output size, the Lanczos reference,
colour drift on the 1/8 grid, and detail gain. Reading and decoding are the
readers' cost and are left out. Best of ``--repeat`` runs, CPU time and wall.

    python benchmarks/bench_qc.py --source 1920x1080 --output 3840x2160
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _size(s: str) -> tuple[int, int]:
    w, h = (int(v) for v in s.lower().split("x"))
    return w, h


def main(argv=None) -> None:
    import cv2

    import cinescale_post.qc.metrics as m
    from cinescale_post.qc.analyse import drift_grid

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=_size, default=(1920, 1080))
    ap.add_argument("--output", type=_size, default=(3840, 2160))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: OpenCV's default)")
    a = ap.parse_args(argv)
    if a.threads:
        cv2.setNumThreads(a.threads)
    sw, sh = a.source
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((sh + 8, sw + 8, 3)).astype(np.float32), (0, 0), 2.0)
    src0, src1 = tex[4:4 + sh, 4:4 + sw], tex[4:4 + sh, 6:6 + sw]
    out0, out1 = m.lanczos(src0, a.output), m.lanczos(src1, a.output)
    grid = drift_grid(sw, sh)
    state: dict = {}

    steps = {
        "flow x2 (DIS, source size)": lambda: state.update(f=m.source_flow(src0, src1), b=m.source_flow(src1, src0)),
        "consistency mask": lambda: state.update(mask=m.consistency_mask(state["f"], state["b"])),
        "flow + mask to output size": lambda: state.update(fu=m.resize_flow(state["f"], a.output),
                                                           mu=m.resize_mask(state["mask"], a.output)),
        "warping error x2 (output)": lambda: m.warping_errors([(out0, out1), (out0, out1)], state["fu"],
                                                              state["mu"]),
        "Lanczos reference (output)": lambda: m.lanczos(src1, a.output),
        "colour drift (1/8 grid)": lambda: m.colour_drift(m.shrink(out1, grid), m.shrink(src1, grid)),
        "detail gain (output)": lambda: m.detail_gain(out1, out0),
    }
    print(f"source {sw}x{sh} -> output {a.output[0]}x{a.output[1]}, best of {a.repeat}, "
          f"OpenCV threads {cv2.getNumThreads()}")
    total_wall = total_cpu = 0.0
    for name, fn in steps.items():
        best = (float("inf"), float("inf"))
        for _ in range(a.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
        total_wall += best[0]
        total_cpu += best[1]
        print(f"  {name:<30} {best[0] * 1000:8.1f} ms wall {best[1] * 1000:8.1f} ms CPU")
    print(f"  {'per frame':<30} {total_wall * 1000:8.1f} ms wall {total_cpu * 1000:8.1f} ms CPU")


if __name__ == "__main__":
    main()
