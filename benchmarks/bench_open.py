"""Issue 11 item 9: probe + open of a 1-minute vs a 30-minute clip must not grow
with the clip's length (target: at most 1.2x).

Clips: long-GOP H.264 1080p (keyint 240, 2 B-frames, 23.976 fps, very low
bitrate so 30 minutes fit on disk), written once by the imageio-ffmpeg binary
into a cache folder. Measured in one process: ``media.probe.probe`` (the
frame table from the MP4 index + one decoded frame) and a render task's
``open_input(..., planned=info)`` (no index read, no decode), CPU time and
wall time, best of 5.

    .venv/bin/python benchmarks/bench_open.py [--cache /tmp/bench_open]

Last line: ``probe+open 30-min / 1-min: <ratio>x (target <= 1.2x)``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path


def make_clip(path: Path, minutes: int) -> Path:
    if path.exists():
        return path
    import imageio_ffmpeg

    tmp = path.with_suffix(".part.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1920x1080:rate=24000/1001", "-t", str(minutes * 60), "-c:v", "libx264",
                    "-preset", "ultrafast", "-x264-params", "keyint=240:min-keyint=240:bframes=2:scenecut=0",
                    "-b:v", "150k", "-pix_fmt", "yuv420p", str(tmp)], check=True)
    os.replace(tmp, path)
    return path


def measure(path: Path, host, repeats: int = 5) -> tuple[float, float, int]:
    from cinescale_post.media.probe import open_input, probe

    best_cpu = best_wall = float("inf")
    frames = 0
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        info = probe(str(path), host=host)
        with open_input(str(path), host=host, planned=info):
            pass
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
        frames = info.frame_count
    return best_cpu, best_wall, frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/bench_open")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    short = make_clip(cache / "h264_1080p_1min.mp4", 1)
    long = make_clip(cache / "h264_1080p_30min.mp4", 30)
    from cinescale_post.pipeline.host import Host

    host = Host(load_entrypoints=False)
    measure(short, host, 1)  # warm imports and caches
    rows = []
    for p in (short, long):
        cpu, wall, frames = measure(p, host)
        rows.append((cpu, wall))
        print(f"{p.name}: {frames} frames, {p.stat().st_size / 1e6:.1f} MB, probe+open CPU {cpu * 1000:.1f} ms, "
              f"wall {wall * 1000:.1f} ms")
    print(f"probe+open 30-min / 1-min: {rows[1][0] / rows[0][0]:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
