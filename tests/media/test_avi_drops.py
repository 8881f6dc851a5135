"""Issue 23 items 4 and 6: AVI files as captures and DivX encoders leave them.

A capture that drops a frame writes an empty chunk (VirtualDub) or a
not-coded VOP (Xvid/DivX N-VOP); AVI's timing is the chunk index, so the
frame is there and shows the picture before it, as players show it. Judged
against the ffmpeg binary's decode of the clip before the drops went in.
"""

from __future__ import annotations

import random
import subprocess

import av
import numpy as np
import pytest

from cinescale_post.media.movie_reader import MovieReader
from tests.helpers import cli_env, run_cli
from tests.media import ffjudge
from tests.media import realworld as rw

MOVING = "geq=lum='mod(lum(X,Y)+N*9,220)+16':cb='cb(X,Y)':cr='cr(X,Y)'"
DROPS_BEFORE = (5, 12)  # packets of the clean clip before which a frame was dropped
LOW_DELAY = {
    "h264": ["-c:v", "libx264", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p"],
    "mpeg4": ["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "0", "-g", "10"],
    "mjpeg": ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
}


def clean_clip(path, vcodec, rate="25"):
    rw.run_ffmpeg("-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate},{MOVING}",
                  "-frames:v", "25", *vcodec, str(path))
    return path


def not_coded_vop(time_base) -> bytes:
    """A P-type VOP with vop_coded = 0 (what Xvid writes for a dropped frame)."""
    res = time_base.denominator
    k = max(1, (res - 1).bit_length())
    bits = "01" + "0" + "1" + "0" * k + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def with_drops(src, dst, *, drop: bytes = b""):
    """``src`` remuxed with a dropped frame (an empty chunk, or ``drop``) before
    packets :data:`DROPS_BEFORE`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="avi") as out:
        v = inp.streams.video[0]
        vo = out.add_stream_from_template(v)
        packets = [(bytes(p), p.is_keyframe) for p in inp.demux(v) if p.size]
        n = 0
        for i, (data, key) in enumerate(packets):
            chunks = [(drop, False)] if i in DROPS_BEFORE else []
            for payload, k in chunks + [(data, key)]:
                p = av.Packet(payload)
                p.stream, p.time_base, p.dts, p.pts, p.is_keyframe = vo, v.time_base, n, n, k
                out.mux(p)
                n += 1
    return dst


def ffmpeg_luma(path, size=(64, 48)) -> np.ndarray:
    data = subprocess.run([rw.ffmpeg(), "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode",
                           "passthrough", "-f", "rawvideo", "-pix_fmt", "gray16le", "pipe:1"],
                          capture_output=True, check=True).stdout
    return np.frombuffer(data, "<u2").reshape(-1, size[1], size[0]).astype(np.float32) / 65535


def timeline(n_clean: int) -> list[int]:
    """The clean clip's picture each chunk of the dropped clip shows."""
    out = []
    for i in range(n_clean):
        if i in DROPS_BEFORE:
            out.append(i - 1)  # the drop shows the picture before it
        out.append(i)
    return out


def shown(frames, clean) -> list[int]:
    y = np.array([0.299, 0.587, 0.114], np.float32)
    return [int(np.argmin([np.abs(f.rgb @ y - c).mean() for c in clean])) for f in frames]


@pytest.mark.parametrize("codec", list(LOW_DELAY))
@pytest.mark.parametrize("drop", ["empty chunk", "not-coded VOP"])
def test_a_dropped_frame_shows_the_picture_before_it(tmp_path, codec, drop):
    if drop == "not-coded VOP" and codec != "mpeg4":
        pytest.skip("not-coded VOPs are MPEG-4 Part 2")
    clean = clean_clip(tmp_path / "clean.avi", LOW_DELAY[codec])
    with av.open(str(clean)) as c:
        tb = c.streams.video[0].time_base
    dropped = with_drops(clean, tmp_path / "dropped.avi", drop=not_coded_vop(tb) if drop != "empty chunk" else b"")
    truth = ffmpeg_luma(clean)
    assert len(truth) == 25 and ffjudge.frame_count(dropped) == 25  # ffmpeg decodes the 25 pictures
    want = timeline(25)
    with MovieReader(dropped) as r:
        assert r.info.frame_count == 27
        if drop == "empty chunk":
            assert any("2 drop frame(s)" in n for n in r.info.notes), r.info.notes
        assert shown(r.read(r.info.frame_numbers), truth) == want
        numbers = list(r.info.frame_numbers)
    rnd = random.Random(5)
    for _ in range(4):  # a farm task reads a few frames anywhere
        pick = sorted(rnd.sample(numbers, 3))
        with MovieReader(dropped) as r:
            assert shown(r.read(pick), truth) == [want[n - 1001] for n in pick], pick


def test_a_divx_style_avi_renders_every_frame(tmp_path):
    """DivX 5 as it arrives: packed B-frames (a packet holding two VOPs, then a
    not-coded placeholder) with DivX503b user data, a clock of 2997/125, N-VOP
    drop frames before key frames, and AC3 audio whose last frame is cut short.
    Every picture ffmpeg decodes is read in ffmpeg's order, each drop frame
    shows the picture before it, and the master has them all."""
    src = rw.lavfi_clip(tmp_path / "xvid.avi", rate="2997/125", seconds=2,
                        vcodec=["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2", "-g", "12", "-q:v", "4",
                                "-vf", MOVING], acodec=None)
    packed = rw.pack_bframes(src, tmp_path / "packed.avi")
    truth = ffmpeg_luma(packed)
    n = len(truth)
    with av.open(str(packed)) as c:
        v = c.streams.video[0]
        keys = [i for i, p in enumerate(q for q in c.demux(v) if q.size) if p.is_keyframe]
    drops_before = keys[1:3]
    dropped = tmp_path / "dropped.avi"
    with av.open(str(packed)) as inp, av.open(str(dropped), "w", format="avi") as out:
        v = inp.streams.video[0]
        vo = out.add_stream_from_template(v)
        k = 0
        for i, p in enumerate(q for q in inp.demux(v) if q.size):
            chunks = [(not_coded_vop(v.time_base), False)] if i in drops_before else []
            for payload, key in chunks + [(bytes(p), p.is_keyframe)]:
                pkt = av.Packet(payload)
                pkt.stream, pkt.time_base, pkt.dts, pkt.pts, pkt.is_keyframe = vo, v.time_base, k, k, key
                out.mux(pkt)
                k += 1
    audio = tmp_path / "audio.ac3"
    rw.run_ffmpeg("-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                  "-t", "2.2", "-c:a", "ac3", str(audio))
    data = audio.read_bytes()
    audio.write_bytes(data[: len(data) - 700])  # the last AC3 frame cut short
    divx = rw.mux_audio_from(dropped, audio, tmp_path / "divx.avi")
    assert ffjudge.frame_count(divx) == n  # ffmpeg decodes every picture; drop frames give none
    # the picture each frame shows: the placeholders' B-frames are pictures; a drop repeats the one before
    want, pictures = [], 0
    for i in range(n + len(drops_before)):
        if len(want) in [d + j for j, d in enumerate(drops_before)]:
            want.append(pictures - 1)
        else:
            want.append(pictures)
            pictures += 1
    with MovieReader(divx) as r:
        assert r.info.frame_count == n + 2
        assert shown(r.read(r.info.frame_numbers), truth) == want
    out = tmp_path / "master.mov"
    r = run_cli(["render", str(divx), "-o", str(out), "--set", "output.width=128", "--set", "output.height=96",
                 "--progress", "none"], env=cli_env(CINESCALE_LOAD_PLUGINS=""))
    assert r.returncode == 0, r.stderr
    assert ffjudge.frame_count(out) == n + 2
    assert "ac3" in rw.stream_line(out, "Audio")
