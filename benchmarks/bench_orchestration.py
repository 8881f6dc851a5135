"""Orchestration overhead and memory flatness.

1. Overhead: wall time of `run()` with a no-op backend (test-identity) over
   the time of reading + writing the same frames alone (our reader and
   writer, no plan/windows/manifest), same process, alternating, best of N.
   Target: under 1.05.
2. Peak RSS of a whole `cinescale render` subprocess for a short and a long
   clip at 1080p (should be flat: frames stream, never the clip).

    python benchmarks/bench_orchestration.py --frames 48 --rss 10,300
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds; CPU time is stable on a shared machine, wall is not."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    w, c = _clock()
    return w - t0[0], c - t0[1]


def baseline(clip: str, out: str, host, codec: str, opts: dict) -> tuple[float, float]:
    from cinescale_post.contracts.media import OutputTarget
    from cinescale_post.media.probe import open_input

    t0 = _clock()
    with open_input(clip, host=host) as reader:
        info = reader.info
        target = OutputTarget(path=out, codec=codec, width=info.width, height=info.height, source=info,
                              frame_numbers=info.frame_numbers, options=opts, colour=info.colour, audio=False)
        w = host.writer(codec).open(target)
        for fr in reader.read(info.frame_numbers):
            w.write(fr)
        w.close()
    return _since(t0)


def orchestrated(clip: str, out: str, host, preset: str) -> tuple[float, float]:
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import NullSink
    from cinescale_post.orchestrator.render_job import run

    t0 = _clock()
    p = plan_mod.build(preset, host=host, input=clip, output=out)
    run(p, host, NullSink(), overwrite=True)
    return _since(t0)


def rss_of_render(clip: str, out: str, preset: str, site: str) -> float:
    env = dict(os.environ, PYTHONPATH=site, CINESCALE_LOAD_PLUGINS="testbackends")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "cinescale_post", "render", clip, "-o", out, "--preset", preset,
                    "--progress", "none", "--overwrite"], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024.0  # MiB; max over children so far, so run short first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss", default="10,300", help="clip lengths for the RSS comparison ('' to skip)")
    ap.add_argument("--codec", default="exr")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))

    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host
    from cinescale_post.testing import make_clip

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import TEST_BACKENDS_DIST, fake_distribution, write_preset  # noqa: E402

    host = Host(load_entrypoints=False, extra_plugins=(tb,))
    tmp = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    clip = str(make_clip(tmp / "in.mov", frames=args.frames, size=(w, h), codec="prores_ks", profile="proxy"))
    opts = {"pixel": "half", "compression": "zip"} if args.codec == "exr" else {}
    optstr = 'pixel = "half"\ncompression = "zip"' if args.codec == "exr" else ""
    preset = str(write_preset(tmp / "id.toml", backend="test-identity", codec=args.codec, width=w, height=h,
                              chunk=0, options=optstr))
    suffix = ".####.exr" if args.codec == "exr" else ".mov"
    base_out = str(tmp / "base" / "b.%04d.exr") if args.codec == "exr" else str(tmp / "base.mov")
    (tmp / "base").mkdir()
    b, o = [], []
    for _ in range(args.repeat):
        b.append(baseline(clip, base_out, host, args.codec, opts))
        o.append(orchestrated(clip, str(tmp / "orch" / f"o{suffix}"), host, preset))
    bw, bc = min(x[0] for x in b), min(x[1] for x in b)
    ow, oc = min(x[0] for x in o), min(x[1] for x in o)
    print("| frames | size | codec | read+write alone, best wall / CPU s | render with no-op backend, best wall / CPU s "
          "| ratio wall | ratio CPU |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.frames} | {args.size} | {args.codec} | {bw:.2f} / {bc:.2f} | {ow:.2f} / {oc:.2f} "
          f"| {ow / bw:.3f} | {oc / bc:.3f} |")
    if args.rss:
        site = str(fake_distribution(tmp / "site", "cinescale-testbackends", TEST_BACKENDS_DIST))
        print("\n| clip frames | peak RSS of `cinescale render` (MiB) |\n|---|---|")
        for n in [int(x) for x in args.rss.split(",")]:
            c = str(make_clip(tmp / f"rss{n}.mov", frames=n, size=(w, h), codec="prores_ks", profile="proxy"))
            print(f"| {n} | {rss_of_render(c, str(tmp / f'rss{n}' / f'r{suffix}'), preset, site):.0f} |", flush=True)


if __name__ == "__main__":
    main()
