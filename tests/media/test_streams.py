"""Issue 23 item 1: MPEG program and transport streams (.mpg/.vob, .ts/.m2ts),
made by the ffmpeg binary the way DVDs, broadcast captures and AVCHD cameras
make them, read frame for frame as ffmpeg decodes them: no index, stamps that
start late or wrap at 2^33, streams cut mid-GOP."""

from __future__ import annotations

import random
import subprocess

import numpy as np
import pytest

from cinescale_post.media.movie_reader import MovieReader
from tests.helpers import run_cli
from tests.media import ffjudge
from tests.media import realworld as rw

SMALL = ["--set", "output.width=128", "--set", "output.height=96", "--progress", "none"]
# every frame different (testsrc2 at this size barely moves): luma shifted by 9 codes a frame
_GOP = ["-vf", "geq=lum='mod(lum(X,Y)+N*9,220)+16':cb='cb(X,Y)':cr='cr(X,Y)'", "-g", "12", "-bf", "2"]
KINDS = {
    "h264.ts": (["-c:v", "libx264", "-pix_fmt", "yuv420p", *_GOP], None, []),
    "mpeg2.ts": (["-c:v", "mpeg2video", *_GOP], ["-c:a", "mp2"], []),
    "dvd.vob": (["-c:v", "mpeg2video", *_GOP], ["-c:a", "ac3"], ["-f", "vob"]),
    "prog.mpg": (["-c:v", "mpeg2video", *_GOP], None, ["-f", "mpeg"]),
    "avchd.m2ts": (["-c:v", "libx264", "-pix_fmt", "yuv420p", *_GOP], ["-c:a", "ac3"], ["-mpegts_m2ts_mode", "1"]),
}


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    return {name: rw.lavfi_clip(root / name, rate="25", seconds=2, vcodec=v, acodec=a, extra=x)
            for name, (v, a, x) in KINDS.items()}


def ffmpeg_luma(path, size=(64, 48)) -> np.ndarray:
    """Luma of every picture the ffmpeg binary decodes, in order: (N, H, W) in [0, 1]."""
    data = subprocess.run([rw.ffmpeg(), "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode",
                           "passthrough", "-f", "rawvideo", "-pix_fmt", "gray16le", "pipe:1"],
                          capture_output=True, check=True).stdout
    return np.frombuffer(data, "<u2").reshape(-1, size[1], size[0]).astype(np.float32) / 65535


def assert_same_pictures(frames, theirs):
    """Each frame is ffmpeg's picture at its index: its luma (BT.601: the clips
    are SD and untagged) is nearest that one and within a few codes of it."""
    for f in frames:
        i = f.index
        y = f.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        near = range(max(0, i - 2), min(len(theirs), i + 3))
        err = {j: float(np.abs(y - theirs[j]).mean()) for j in near}
        assert min(err, key=err.get) == i and err[i] < 0.01, (f.number, err)


@pytest.mark.parametrize("name", list(KINDS))
def test_every_frame_ffmpeg_decodes_in_order_and_by_random_access(streams, name):
    path = streams[name]
    n = ffjudge.frame_count(path)
    assert n == 50
    theirs = ffmpeg_luma(path)
    with MovieReader(path) as r:
        assert r.info.frame_count == n and r.info.rate == 25
        nums = list(r.info.frame_numbers)
        assert_same_pictures(list(r.read(nums)), theirs)
    rnd = random.Random(7)
    for _ in range(4):  # a farm task reads a few frames anywhere: each seek lands before its key frame
        with MovieReader(path) as r:
            assert_same_pictures(list(r.read(sorted(rnd.sample(nums, 3)))), theirs)


def test_a_stream_cut_mid_gop_starts_at_its_first_key_frame(streams, tmp_path):
    src = streams["mpeg2.ts"]
    cut = tmp_path / "capture.ts"
    data = src.read_bytes()
    start = (len(data) // 3) // 188 * 188  # whole 188-byte TS packets, mid-GOP
    cut.write_bytes(data[start:])
    n = ffjudge.frame_count(cut)
    with MovieReader(cut) as r:
        assert r.info.frame_count == n
        assert any("first key frame" in note for note in r.info.notes)
        assert_same_pictures(list(r.read(r.info.frame_numbers)), ffmpeg_luma(cut))


def test_a_transport_stream_whose_clock_wraps(tmp_path):
    # 2^33 ticks of 1/90000 s is 95443.7 s: start 1.2 s before the wrap (FFmpeg unwraps: negative stamps)
    path = rw.lavfi_clip(tmp_path / "wrap.ts", rate="25", seconds=2, vcodec=["-c:v", "mpeg2video", *_GOP],
                         acodec=None, extra=["-output_ts_offset", "95442.5", "-mpegts_copyts", "1"])
    n = ffjudge.frame_count(path)
    assert n == 50
    theirs = ffmpeg_luma(path)
    with MovieReader(path) as r:
        assert r.info.frame_count == n
        nums = list(r.info.frame_numbers)
        assert_same_pictures(list(r.read(nums)), theirs)
    with MovieReader(path) as r:  # a seek across the wrap
        assert_same_pictures(list(r.read(nums[30:33])), theirs)


@pytest.mark.parametrize("name", ["avchd.m2ts", "dvd.vob"])
def test_render_a_stream_to_a_master_with_its_audio(env, streams, name, tmp_path):
    src = streams[name]
    out = tmp_path / "master.mov"
    r = run_cli(["render", str(src), "-o", str(out), *SMALL], env=env)
    assert r.returncode == 0, r.stderr
    assert ffjudge.frame_count(out) == 50
    line = ffjudge.stream_line(out)
    assert "25 fps" in line and "progressive" in line
    assert "ac3" in rw.stream_line(out, "Audio")
    assert rw.audio_md5(out) == rw.audio_md5(src)


def test_farm_chunks_and_resume_on_a_transport_stream(env, streams, tmp_path):
    src = streams["h264.ts"]
    whole, parts = tmp_path / "whole" / "f.####.exr", tmp_path / "parts" / "f.####.exr"
    preset = ["--preset", "uhd-exr-draft"]
    assert run_cli(["render", str(src), "-o", str(whole), *preset, *SMALL], env=env).returncode == 0
    for frames in ("1001-1017", "1030-1050", "1018-1029"):  # farm tasks, any order
        r = run_cli(["render", str(src), "-o", str(parts), *preset, *SMALL, "--frames", frames], env=env)
        assert r.returncode == 0, r.stderr
    r = run_cli(["render", str(src), "-o", str(parts), *preset, *SMALL], env=env)  # resume: nothing left
    assert r.returncode == 0, r.stderr
    import OpenEXR

    for n in (1001, 1017, 1018, 1033, 1050):
        a = OpenEXR.File(str(whole).replace("####", str(n))).channels()
        b = OpenEXR.File(str(parts).replace("####", str(n))).channels()
        for k in a:
            assert np.array_equal(a[k].pixels, b[k].pixels), (n, k)
