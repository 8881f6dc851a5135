"""Delivery movies judged by the ffmpeg binary: the writer honours the audio
mode (copy | pcm | none) on its own, MP4 (H.264/H.265) masters assemble,
H.265 streams of one or two frames are written, and a writer whose muxer
refuses a packet is thrown away without taking the process down."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest

from cinescale_post.contracts.media import Frame
from cinescale_post.media.movie_writer import MovieWriter
from cinescale_post.testing import make_clip as make_test_clip
from tests.helpers import cli_env, run_cli
from tests.media import ffjudge
from tests.media import realworld as rw
from tests.media.test_writers import grey, make_clip, probe_clip, target_for

SMALL = ["--set", "output.width=64", "--set", "output.height=48", "--progress", "plain"]


@pytest.fixture(scope="module")
def env():
    return cli_env(CINESCALE_LOAD_PLUGINS="")  # no entry points: the built-ins only


@pytest.fixture(scope="module")
def aac(tmp_path_factory):
    d = tmp_path_factory.mktemp("delivery")
    return probe_clip(make_clip(d / "aac.mp4", frames=12, audio="aac", timecode="01:00:00:00"))


def _write(info, path, codec="prores_hq", n=None, **kw):
    n = info.frame_count if n is None else n
    with MovieWriter(target_for(info, path, codec, indices=range(n), **kw)) as w:
        for i in range(n):
            w.write(Frame(number=info.frame_numbers[i], index=i, rgb=grey(info, (i % 5) / 4)))
    return path


# ------------------------------------------------------------ audio mode in the writer


@pytest.mark.parametrize("suffix,codec", [(".mov", "prores_hq"), (".mp4", "h264_10")])
def test_writer_audio_pcm_copy_none(aac, tmp_path, suffix, codec):
    pcm = _write(aac, tmp_path / f"pcm{suffix}", codec, audio="pcm")
    line = rw.stream_line(pcm, "Audio")
    assert "pcm_s24le" in line and "48000 Hz" in line and "stereo" in line, line
    assert rw.audio_md5(pcm) == rw.audio_md5(aac.path, decode_to="pcm_s24le")

    for mode in (True, "copy"):
        copy = _write(aac, tmp_path / f"copy{suffix}", codec, audio=mode)
        assert "aac" in rw.stream_line(copy, "Audio")
        assert rw.audio_md5(copy) == rw.audio_md5(aac.path)  # bit-exact by packet copy

    for mode in (False, "none"):
        none = _write(aac, tmp_path / f"none{suffix}", codec, audio=mode)
        text = subprocess.run([rw.ffmpeg(), "-hide_banner", "-i", str(none)], capture_output=True, text=True).stderr
        assert ": Audio:" not in text


# ------------------------------------------------------------ MP4 masters


@pytest.mark.parametrize("preset,codec,name,n", [
    ("hd-h265-delivery-draft", "hevc", "h265.mp4", 10),
    ("hd-h265-delivery-draft", "hevc", "h265.mp4", 2),  # x265's dts of a 2-frame stream is garbage
    ("uhd-draft", "h264", "h264.mp4", 10),  # suffix picks h264_10; 10 frames in chunks of 4 -> one chunk
])
def test_mp4_renders_assemble(env, tmp_path, preset, codec, name, n):
    src = make_test_clip(tmp_path / "in.mov", frames=n, size=(64, 48), rate=Fraction(24000, 1001),
                         timecode="01:00:00:00", audio="pcm_s24le")
    out = tmp_path / name
    r = run_cli(["render", str(src), "-o", str(out), "--preset", preset, *SMALL, "--set", "output.chunk=4"],
                env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    line = ffjudge.stream_line(out)
    assert codec in line and "yuv420p10le" in line, line
    assert ffjudge.frame_count(out) == n
    assert rw.rate_of(out) == Fraction(24000, 1001)
    for fr in ffjudge.frame_info(out, frames=n):
        assert (fr["color_primaries"], fr["color_trc"], fr["color_space"]) == ("bt709",) * 3, fr
    assert rw.audio_md5(out) == rw.audio_md5(src)  # PCM into MP4 (ipcm), the same samples
    text = subprocess.run([rw.ffmpeg(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "timecode        : 01:00:00:00" in text


def test_mxf_dnxhr_master_assembles(env, tmp_path):
    """-o out.mxf with a ProRes preset: the suffix picks DNxHR, chunks join into MXF OP1a."""
    src = make_test_clip(tmp_path / "in.mov", frames=10, size=(256, 144), rate=Fraction(25),
                         timecode="01:00:00:00", audio="pcm_s24le")
    out = tmp_path / "o.mxf"
    r = run_cli(["render", str(src), "-o", str(out), "--preset", "uhd-draft", "--set", "output.width=256",
                 "--set", "output.height=144", "--set", "output.chunk=4", "--progress", "plain"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dnxhd (DNXHR HQX)" in ffjudge.stream_line(out)
    assert ffjudge.frame_count(out) == 10 and rw.rate_of(out) == 25
    # the MXF muxer re-chunks PCM per edit unit: the samples, not the packets, are the source's
    assert rw.audio_md5(out, decode_to="pcm_s24le") == rw.audio_md5(src, decode_to="pcm_s24le")
    text = subprocess.run([rw.ffmpeg(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "timecode        : 01:00:00:00" in text


def test_long_gop_chunks_are_one_chunk_said_once(env, tmp_path):
    src = make_test_clip(tmp_path / "in.mov", frames=6, size=(64, 48))
    r = run_cli(["render", str(src), "-o", str(tmp_path / "o.mp4"), "--preset", "hd-h265-delivery-draft", *SMALL,
                 "--set", "output.chunk=2", "--dry-run"], env=env)
    assert r.returncode == 0, r.stderr
    import json

    plan = json.loads(r.stdout)
    assert plan["output"]["chunk"] == 0
    assert sum("cannot be joined by packet copy" in w for w in plan["warnings"]) == 1


# ------------------------------------------------------------ short H.265 streams


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_h265_streams_of_one_to_three_frames(aac, tmp_path, n, suffix):
    # libx265 hands out garbage dts for streams under 3 frames (movie_writer._mux_video)
    for run in range(3):
        out = _write(aac, tmp_path / f"o{run}{suffix}", "h265_10", n=n, audio=False)
        assert ffjudge.frame_count(out) == n


# ------------------------------------------------------------ abort never crashes

_REFUSED = textwrap.dedent("""
    import os, sys
    from cinescale_post.contracts.errors import OutputError
    from cinescale_post.contracts.media import Frame
    from cinescale_post.media.movie_writer import MovieWriter
    from tests.media.test_writers import grey, probe_clip, target_for

    class Refused(MovieWriter):  # stands in for an encoder that hands out a dts the muxer refuses
        def _mux_video(self, pkt):
            if pkt.dts is not None and pkt.pts and pkt.pts > 0:
                pkt.dts -= 94_000_000_000_000
            self.out.mux(pkt)

    info = probe_clip(sys.argv[1])
    w = Refused(target_for(info, sys.argv[2], sys.argv[3], audio=False))
    try:
        for i in range(info.frame_count):
            w.write(Frame(number=info.frame_numbers[i], index=i, rgb=grey(info, 0.5)))
        w.close()
    except OutputError as exc:
        w.abort()  # a second abort, as a caller's clean-up does
        print("OutputError", exc)
        sys.exit(4)
""")


@pytest.mark.parametrize("codec,suffix", [("h265_10", ".mp4"), ("h264_10", ".mov")])
def test_a_refused_packet_is_an_output_error_not_a_segfault(aac, tmp_path, codec, suffix):
    kept = _write(aac, tmp_path / f"published{suffix}", codec, audio=False)  # rendered earlier
    before = kept.read_bytes()
    out = tmp_path / f"m{suffix}"
    proc = subprocess.run([sys.executable, "-c", _REFUSED, aac.path, str(out), codec], capture_output=True,
                          text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 4, (proc.returncode, proc.stdout + proc.stderr)  # was -11 (SIGSEGV)
    assert str(out) in proc.stdout and "fix:" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == [kept.name]  # temporary removed, nothing published lost
    assert kept.read_bytes() == before


def test_abort_is_idempotent_and_after_close_a_no_op(aac, tmp_path):
    w = MovieWriter(target_for(aac, tmp_path / "m.mov", audio=False))
    w.write(Frame(number=aac.frame_numbers[0], index=0, rgb=grey(aac, 0.5)))
    w.abort()
    w.abort()
    assert os.listdir(tmp_path) == []
    w = MovieWriter(target_for(aac, tmp_path / "m.mov", audio=False))
    w.write(Frame(number=aac.frame_numbers[0], index=0, rgb=grey(aac, 0.5)))
    assert w.close() == [str(tmp_path / "m.mov")]
    w.abort()
    assert os.listdir(tmp_path) == ["m.mov"] and ffjudge.frame_count(tmp_path / "m.mov") == 1


def test_writer_refuses_an_unknown_audio_mode(aac, tmp_path):
    from cinescale_post.contracts.errors import PlanError

    with pytest.raises(PlanError, match="copy, pcm or none"):
        MovieWriter(target_for(aac, tmp_path / "m.mov", audio="loud"))
    assert os.listdir(tmp_path) == []


def test_assemble_maps_a_refused_packet_to_an_output_error(aac, tmp_path, monkeypatch):
    """Before: av.ArgumentError escaped as an internal error (exit 1)."""
    from cinescale_post.contracts.errors import OutputError
    import cinescale_post.media.assemble as assemble

    chunk = _write(aac, tmp_path / "c.mp4", "h265_10", audio=False)
    real_join = assemble._join

    def refusing_join(av, out, *args):
        class Out:  # the muxer, with later packets' dts going backwards
            def __getattr__(self, name):
                return getattr(out, name)

            def mux(self, pkt):
                if pkt.pts and pkt.pts > 1001:
                    pkt.dts -= 94_000_000_000_000
                return out.mux(pkt)

        return real_join(av, Out(), *args)

    monkeypatch.setattr(assemble, "_join", refusing_join)
    with pytest.raises(OutputError, match="muxer refused a packet") as e:
        assemble.concat_movies([str(chunk)], str(tmp_path / "m.mp4"), source=aac, audio=False)
    assert e.value.exit_code == 4 and e.value.fix
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]  # chunk kept, temporary removed
