"""UHD encode cost: our ProRes 422 HQ writer vs the ffmpeg CLI, and EXR writes.

What is compared (reference/MEDIA_IO.md section 3.4 for the method):

* **writer**: ``MovieWriter`` fed float32 R'G'B' frames, so the time includes
  our BT.709 matrix, 4:2:2 box filter and 10-bit quantisation, plane upload,
  ``prores_ks`` (profile hq, 1 thread) and muxing.
* **writer encode only**: the same PyAV encoder fed ready 10-bit planes, to
  split the matrix from the codec.
* **matrix only**: ``rgb_to_ycbcr`` on one frame.
* **ffmpeg CLI**: the ``imageio-ffmpeg`` binary encoding the *same* planes, stored
  beforehand as raw yuv422p10le, with ``-threads 1 -c:v prores_ks -profile:v hq``.
* **EXR half PIZ**: ``ExrWriter`` (OpenEXR bindings), temp file + rename included.

CPU seconds come from ``resource.getrusage`` (self for in-process work,
children for the CLI); they are stable on shared machines where wall time is
not. The ratio the issue tracks is writer CPU / CLI CPU (target <= 1.1).

Usage::

    python benchmarks/bench_encode.py --quick      # 3 frames each, < 2 min on 2 cores
    python benchmarks/bench_encode.py --frames 24  # the dossier's setting
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cinescale_post.contracts.media import Colour, Frame, OutputTarget, SourceInfo  # noqa: E402
from cinescale_post.media.colour import rgb_to_ycbcr  # noqa: E402

RATE = Fraction(24000, 1001)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_frames(n: int, w: int, h: int, distinct: int = 4):
    """``distinct`` float32 (h, w, 3) frames with a gradient and grain, cycled to ``n``.

    Grain matters: ProRes cost depends on content, and flat frames are cheap.
    """
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 * (xx / w + yy / h)], axis=-1)
    frames = []
    for k in range(min(n, distinct)):
        grain = rng.normal(0.0, 0.04, (h, w, 3)).astype(np.float32)
        frames.append(np.clip(base * (0.8 + 0.05 * k) + grain, 0, 1).astype(np.float32))
    return [frames[i % len(frames)] for i in range(n)]


def source(n: int, w: int, h: int) -> SourceInfo:
    return SourceInfo(path="bench", kind="movie", format="mov", codec="prores", width=w, height=h,
                      pix_fmt="yuv422p10le", bit_depth=10, rate=RATE, time_base=Fraction(1, 24000),
                      frame_numbers=tuple(range(1001, 1001 + n)), timecode="01:00:00:00")


def bench_writer(frames, w, h, out: Path) -> tuple[float, float]:
    from cinescale_post.media.movie_codecs import validate_movie_options
    from cinescale_post.media.movie_writer import MovieWriter

    src = source(len(frames), w, h)
    tgt = OutputTarget(path=str(out), codec="prores_hq", width=w, height=h, source=src,
                       frame_numbers=src.frame_numbers, audio=False, colour=Colour(),
                       options=validate_movie_options("prores_hq", {"threads": 1}))
    cpu, wall = 0.0, 0.0
    writer = MovieWriter(tgt)
    for i, rgb in enumerate(frames):
        c0, t0 = cpu_self(), time.perf_counter()
        writer.write(Frame(number=1001 + i, index=i, rgb=rgb))
        cpu, wall = cpu + cpu_self() - c0, wall + time.perf_counter() - t0
    c0, t0 = cpu_self(), time.perf_counter()
    writer.close()
    return cpu + cpu_self() - c0, wall + time.perf_counter() - t0


def bench_pyav_planes(planes, n, w, h, out: Path) -> tuple[float, float]:
    """The same encoder fed ready planes (our writer minus the matrix)."""
    import av

    from cinescale_post.media.yuv_planes import fill_planes

    c0, t0 = cpu_self(), time.perf_counter()
    with av.open(str(out), "w", format="mov") as c:
        s = c.add_stream("prores_ks", rate=RATE, options={"profile": "hq", "vendor": "apl0"})
        s.width, s.height, s.pix_fmt = w, h, "yuv422p10le"
        s.codec_context.time_base = s.time_base = Fraction(1, 24000)
        s.codec_context.thread_count = 1
        for i in range(n):
            vf = av.VideoFrame(w, h, "yuv422p10le")
            fill_planes(vf, planes[i % len(planes)])
            vf.pts, vf.time_base = i * 1001, Fraction(1, 24000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return cpu_self() - c0, time.perf_counter() - t0


def bench_cli(raw: Path, w, h, out: Path) -> tuple[float, float, str]:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-v", "error", "-y", "-threads", "1", "-f", "rawvideo", "-pix_fmt", "yuv422p10le",
           "-s", f"{w}x{h}", "-r", "24000/1001", "-i", str(raw), "-c:v", "prores_ks", "-profile:v", "hq",
           "-vendor", "apl0", "-threads", "1", "-color_primaries", "bt709", "-color_trc", "bt709",
           "-colorspace", "bt709", "-color_range", "tv", str(out)]
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True)
    version = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    return cpu_children() - c0, time.perf_counter() - t0, version


def bench_exr(frames, w, h, folder: Path) -> tuple[float, float, float]:
    from cinescale_post.media.exr import ExrWriter, validate_exr_options

    src = source(len(frames), w, h)
    tgt = OutputTarget(path=str(folder / "bench.%04d.exr"), codec="exr", width=w, height=h, source=src,
                       frame_numbers=src.frame_numbers,
                       options=validate_exr_options("exr", {"pixel": "half", "compression": "piz"}))
    writer = ExrWriter(tgt)
    c0, t0 = cpu_self(), time.perf_counter()
    for i, rgb in enumerate(frames):
        writer.write(Frame(number=1001 + i, index=i, rgb=rgb))
    cpu, wall = cpu_self() - c0, time.perf_counter() - t0
    size = sum(os.path.getsize(p) for p in writer.close()) / len(frames)
    return cpu, wall, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24, help="ProRes frames per encoder (default 24)")
    ap.add_argument("--exr-frames", type=int, default=None, help="EXR frames (default: --frames)")
    ap.add_argument("--size", default="3840x2160")
    ap.add_argument("--quick", action="store_true", help="3 frames each (about a minute on 2 cores)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    n = 3 if args.quick else args.frames
    n_exr = 3 if args.quick else (args.exr_frames or args.frames)
    w, h = (int(v) for v in args.size.lower().split("x"))
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # tmpfs keeps disk speed out of it
    work = Path(tempfile.mkdtemp(prefix="cinescale-bench-", dir=root))
    try:
        frames = make_frames(n, w, h)
        distinct = frames[:4]
        c0 = cpu_self()
        planes = [rgb_to_ycbcr(f, matrix=1, range=1, bits=10, subsampling="422") for f in distinct]
        matrix_cpu = (cpu_self() - c0) / len(distinct)
        raw = work / "frames.yuv"
        with open(raw, "wb") as f:
            for i in range(n):
                for p in planes[i % len(planes)]:
                    f.write(np.ascontiguousarray(p, dtype="<u2").tobytes())

        wr_cpu, wr_wall = bench_writer(frames, w, h, work / "writer.mov")
        pl_cpu, pl_wall = bench_pyav_planes(planes, n, w, h, work / "planes.mov")
        cli_cpu, cli_wall, cli_version = bench_cli(raw, w, h, work / "cli.mov")
        exr_cpu, exr_wall, exr_size = bench_exr(frames[:n_exr], w, h, work)

        import av
        import OpenEXR

        def row(name, cpu, wall, frames_n):
            return f"| {name} | {frames_n} | {cpu / frames_n:.3f} | {wall / frames_n:.3f} |"

        print(f"# bench_encode {dt.datetime.now().isoformat(timespec='seconds')}")
        print(f"command: python benchmarks/bench_encode.py {' '.join(argv if argv is not None else sys.argv[1:])}")
        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} "
              f"libavcodec), {cli_version}, OpenEXR {OpenEXR.__version__}; work folder {work.parent}")
        print(f"size {w}x{h}, 1 thread per encoder, content: gradient + grain\n")
        print("| step | frames | CPU s/frame | wall s/frame |")
        print("|---|---|---|---|")
        print(row("our writer, ProRes 422 HQ from float RGB (matrix included)", wr_cpu, wr_wall, n))
        print(row("PyAV prores_ks from ready 10-bit planes", pl_cpu, pl_wall, n))
        print(row("ffmpeg CLI prores_ks hq from raw yuv422p10le", cli_cpu, cli_wall, n))
        print(f"| our BT.709 matrix + 4:2:2 + 10-bit (rgb_to_ycbcr) | {len(distinct)} | {matrix_cpu:.3f} | - |")
        print(row(f"EXR half PIZ, OpenEXR ({exr_size / 1e6:.1f} MB/frame)", exr_cpu, exr_wall, n_exr))
        print()
        print(f"ratio writer / CLI (CPU): **{wr_cpu / cli_cpu:.3f}** (target <= 1.1); "
              f"encode only / CLI: {pl_cpu / cli_cpu:.3f}; wall writer / CLI: {wr_wall / cli_wall:.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
