"""What deinterlacing on read costs (issue 23): the same interlaced clip read
as coded, through ``bwdif`` (frame rate and field rate), and the ffmpeg CLI
running ``bwdif`` over the whole clip, all to float R'G'B' frames.

Our reader computes each delivered frame in a fresh filter graph from the
coded frames its filter looks at (i-1, i, i+1), so any chunking gets the same
frames; this measures what that costs against one continuous graph (the CLI).
CPU seconds from ``resource.getrusage`` (self for the reader, children for
the CLI), per delivered frame. The last line is the ratio of our bwdif read
to the as-coded read.

Usage::

    python benchmarks/bench_fields.py            # 1920x1080i25, 50 frames, < 1 min on 2 cores
    python benchmarks/bench_fields.py --size 720x576 --frames 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg

from cinescale_post.contracts.media import ReadPolicy
from cinescale_post.media.probe import open_input
from cinescale_post.pipeline.host import Host


def _cpu(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def make_clip(path: Path, size: str, frames: int) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate=50", "-frames:v", str(frames), "-vf",
                    "tinterlace=interleave_top,fieldorder=tff", "-c:v", "mpeg2video", "-flags", "+ildct+ilme",
                    "-b:v", "20M", str(path)], check=True)
    return path


def read_all(path: Path, policy: ReadPolicy) -> tuple[int, float]:
    host = Host(load_entrypoints=False)
    t0 = _cpu()
    with open_input(path, host=host, policy=policy) as r:
        n = sum(1 for _ in r.read(r.info.frame_numbers))
    return n, _cpu() - t0


def cli(path: Path, mode: str) -> float:
    t0 = _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-threads", "1", "-filter_threads", "1", "-i",
                    str(path), "-vf", f"bwdif=mode={mode}:parity=auto:deint=all", "-f", "rawvideo", "-pix_fmt",
                    "gbrpf32le", "-"], check=True, stdout=subprocess.DEVNULL)
    return _cpu(resource.RUSAGE_CHILDREN) - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=50, help="interlaced frames")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "i.ts", args.size, args.frames)
        rows = []
        n, coded = read_all(clip, ReadPolicy(deinterlace="off", ivtc="off"))
        rows.append(("as coded", n, coded))
        n, frame = read_all(clip, ReadPolicy(deinterlace="bwdif"))
        rows.append(("bwdif, frame rate", n, frame))
        n2, field = read_all(clip, ReadPolicy(deinterlace="bwdif", field_rate="field"))
        rows.append(("bwdif, field rate", n2, field))
        rows.append(("ffmpeg CLI bwdif (frame)", n, cli(clip, "send_frame")))
    print(f"# {dt.date.today()} {platform.node()} {platform.processor() or platform.machine()}: "
          f"{args.size} MPEG-2 TFF, {args.frames} interlaced frames, CPU s per delivered frame")
    for name, frames, cpu in rows:
        print(f"{name:26s} {frames:4d} frames  {cpu / frames * 1000:8.1f} ms/frame")
    print(f"bwdif read / as-coded read: {frame / coded:.2f}x CPU")


if __name__ == "__main__":
    main()
