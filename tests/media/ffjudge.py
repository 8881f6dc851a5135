"""An independent judge for our outputs: the ffmpeg binary shipped by
imageio-ffmpeg (a static FFmpeg 9 build, not the libraries inside PyAV).

ffprobe does not ship with imageio-ffmpeg, so frame-level fields are read
from the ``showinfo`` filter (what ``ffprobe -show_frames`` reports) and
stream-level fields from ``ffmpeg -i``'s stream line.
"""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _run(args: list[str]) -> str:
    p = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", *args], capture_output=True, text=True, timeout=120)
    return p.stderr


def frame_info(path, *, raw: str | None = None, frames: int = 1, tmp=None) -> list[dict]:
    """Per-frame fields from ``showinfo`` for the first ``frames`` frames.

    ``raw`` ("h264", "hevc", "dnxhd"): first copy the video packets into a
    bare elementary stream (no container), so only the bitstream's own
    VUI/header can supply colour tags. Returns dicts with ``color_range``,
    ``color_space``, ``color_primaries``, ``color_trc``, ``sar``, ``s``, ``fmt``.
    """
    src = str(path)
    if raw:
        assert tmp is not None, "raw extraction needs a tmp folder"
        es = str(tmp / f"bitstream.{raw}")
        subprocess.run([FFMPEG, "-v", "error", "-y", "-i", src, "-map", "0:v:0", "-c:v", "copy", "-f", raw, es],
                       check=True, timeout=120)
        args = ["-f", raw, "-i", es]
    else:
        args = ["-i", src]
    err = _run([*args, "-map", "0:v:0", "-vf", "showinfo", "-frames:v", str(frames), "-f", "null", "-"])
    out: list[dict] = []
    for line in err.splitlines():
        if "Parsed_showinfo" not in line:
            continue
        if " n:" in line:
            d = dict(re.findall(r"(\w+):\s*(\S+)", line.split("]", 1)[1]))
            out.append(d)
        elif "color_range:" in line and out:
            out[-1].update(re.findall(r"(color_\w+):(\S+)", line))
    return out


def stream_line(path) -> str:
    """The ``Stream #0:0 ... Video:`` line of ``ffmpeg -i`` (input side)."""
    err = _run(["-i", str(path)])
    for line in err.splitlines():
        if "Video:" in line and "Stream #0" in line:
            return line.strip()
    raise AssertionError(f"ffmpeg found no video stream in {path}:\n{err[-2000:]}")


def display_aspect(path) -> tuple[Fraction, Fraction, tuple[int, int]]:
    """(SAR, DAR, (w, h)) as ffmpeg reports them for the video stream."""
    line = stream_line(path)
    w, h = map(int, re.search(r", (\d{2,5})x(\d{2,5})", line).groups())
    m = re.search(r"SAR (\d+):(\d+) DAR (\d+):(\d+)", line)
    if not m:
        return Fraction(1), Fraction(w, h), (w, h)
    a, b, c, d = map(int, m.groups())
    return Fraction(a, b), Fraction(c, d), (w, h)


def frame_count(path) -> int:
    """Frames ffmpeg decodes (``-f null``), the ``-count_frames`` equivalent."""
    err = _run(["-i", str(path), "-map", "0:v:0", "-f", "null", "-"])
    counts = re.findall(r"frame=\s*(\d+)", err)
    return int(counts[-1]) if counts else 0
