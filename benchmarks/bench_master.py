"""The main job against what a user would type instead (issue 11, first benchmark).

A draft render of a 1080p ProRes 422 HQ clip with PCM audio to a UHD ProRes
422 HQ master with audio::

    cinescale render clip.mov -o ours.mov --preset uhd-draft

against the ffmpeg command a user would type (the imageio-ffmpeg binary)::

    ffmpeg -i clip.mov -vf scale=3840:2160:flags=lanczos -c:v prores_ks -profile:v 3 -c:a copy ff.mov

Both run as child processes; CPU seconds (user + system) and peak RSS come
from ``os.wait4`` of each whole process (interpreter start, imports, probe,
render, assembly included). Wall time is printed but is noise on a shared VM.

``--profile`` also runs our render in-process under cProfile and prints where
the CPU time goes (top functions by own time).

Usage::

    python benchmarks/bench_master.py --frames 12            # ~2 x 40 CPU-s
    python benchmarks/bench_master.py --frames 12 --profile
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, seed: int = 0) -> None:
    """1920x1080 ProRes 422 HQ at 24000/1001 with stereo PCM s24le: a
    gradient plus grain (so the encoder has real work) and a moving square."""
    import av

    rng = np.random.default_rng(seed)
    w, h = 1920, 1080
    rate = Fraction(24000, 1001)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 * (xx + yy) / (w + h)], -1)
    with av.open(str(path), "w") as out:
        v = out.add_stream("prores_ks", rate=rate, options={"profile": "hq"})
        v.width, v.height, v.pix_fmt = w, h, "yuv422p10le"
        cc = v.codec_context
        cc.color_primaries = cc.color_trc = cc.colorspace = 1
        a = out.add_stream("pcm_s24le", rate=48000)
        a.layout = "stereo"
        samples = 0
        for i in range(frames):
            img = base + 0.04 * rng.standard_normal((h, w, 3), dtype=np.float32)
            x0 = (i * 37) % (w - 200)
            img[400:600, x0:x0 + 200] = (0.9, 0.2, 0.1)
            px = np.rint(np.clip(img, 0, 1) * 65535).astype(np.uint16)
            vf = av.VideoFrame.from_ndarray(px, format="rgb48le").reformat(format="yuv422p10le", dst_colorspace=1)
            vf.pts, vf.time_base = i * 1001, Fraction(1, 24000)
            vf.color_primaries = vf.color_trc = vf.colorspace = 1
            for p in v.encode(vf):
                out.mux(p)
            end = Fraction((i + 1) * 1001, 24000)
            while Fraction(samples, 48000) < end:
                n = 1024
                t = np.arange(samples, samples + n) / 48000.0
                x = (0.2 * np.sin(2 * np.pi * 440 * t) * 2 ** 30).astype(np.int32)
                af = av.AudioFrame.from_ndarray(np.stack([x, x], 1).reshape(1, -1), format="s32", layout="stereo")
                af.sample_rate, af.pts, af.time_base = 48000, samples, Fraction(1, 48000)
                for p in a.encode(af):
                    out.mux(p)
                samples += n
        for s in (v, a):
            for p in s.encode():
                out.mux(p)


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """CPU seconds, peak RSS (MiB) and wall seconds of one child process."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime,
            "rss_mib": ru.ru_maxrss / 1024.0, "wall": wall}


def ours_cmd(clip: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cinescale_post", "render", str(clip), "-o", str(out), "--preset", "uhd-draft",
            "--progress", "none"]


def ffmpeg_cmd(clip: Path, out: Path) -> list[str]:
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-vf",
            "scale=3840:2160:flags=lanczos", "-c:v", "prores_ks", "-profile:v", "3", "-c:a", "copy", str(out)]


def profile_ours(clip: Path, out: Path, top: int) -> None:
    import cProfile
    import pstats

    from cinescale_post.cli.commands import main

    prof = cProfile.Profile()
    prof.enable()
    try:
        main(["render", str(clip), "-o", str(out), "--preset", "uhd-draft", "--progress", "none"])
    except SystemExit:
        pass
    finally:
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command (the minimum CPU is kept)")
    ap.add_argument("--profile", action="store_true", help="also profile our render in-process")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_master_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        clip = root / "clip.mov"
        make_clip(clip, args.frames)
        env = dict(os.environ)
        # An installed package has bytecode; a checkout run with PYTHONDONTWRITEBYTECODE=1
        # (as on the team VM) compiles ~80 modules in every process (~0.15-0.2 CPU-s).
        # Cache it outside the tree and warm it with a 1-frame render first.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        warm = root / "warm.mov"
        make_clip(warm, 1)
        measure(ours_cmd(warm, root / "warm" / "master.mov"), env)
        results = {"ours": [], "ffmpeg": []}
        for r in range(args.repeat):
            for name, cmd in (("ffmpeg", ffmpeg_cmd(clip, root / f"ff{r}.mov")),
                              ("ours", ours_cmd(clip, root / f"ours{r}" / "master.mov"))):
                results[name].append(measure(cmd, env))
        best = {k: min(v, key=lambda m: m["cpu"]) for k, v in results.items()}
        print(f"# {dt.date.today()} {platform.machine()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
              f"{args.frames} frames 1920x1080 ProRes HQ + PCM -> 3840x2160 ProRes 422 HQ + audio")
        print("| command | CPU s | user s | sys s | peak RSS MiB | wall s |")
        print("|---|---|---|---|---|---|")
        for k in ("ours", "ffmpeg"):
            m = best[k]
            print(f"| {k} | {m['cpu']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | {m['rss_mib']:.0f} | {m['wall']:.1f} |")
        if args.profile:
            profile_ours(clip, root / "prof" / "master.mov", args.top)
        ratio = best["ours"]["cpu"] / best["ffmpeg"]["cpu"]
        print(f"master vs ffmpeg: CPU {ratio:.2f}x, peak RSS {best['ours']['rss_mib']:.0f} vs "
              f"{best['ffmpeg']['rss_mib']:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
