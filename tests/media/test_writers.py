"""Movie and 16-bit image writers: write with our writers, read back with PyAV
and OpenCV directly, and compare with what the source and the plan asked for.

Source clips are generated here with PyAV (small sizes, a few frames), and
``probe_clip`` builds the ``SourceInfo`` a reader would (pts from packets).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
import subprocess
import sys
import textwrap
from fractions import Fraction

import av
import numpy as np
import pytest

from cinescale_post.contracts.errors import OutputError, PlanError
from cinescale_post.contracts.media import AudioStreamInfo, Colour, Frame, OutputTarget, SourceInfo
from cinescale_post.media.movie_codecs import validate_movie_options
from cinescale_post.media.movie_writer import MovieWriter
from cinescale_post.media.timecode import offset_timecode

NTSC_FILM = Fraction(24000, 1001)

# ----------------------------------------------------------------- helpers (also used by test_assemble)


def make_clip(path, *, frames=12, rate=NTSC_FILM, size=(64, 48), audio=None, timecode=None, pts=None,
              time_base=None) -> str:
    """Write an H.264 test clip: frame i is grey level i*20 (8-bit), optional
    audio ("aac" with its 1024-sample priming, or "pcm_s24le") and timecode.
    ``pts`` (with ``time_base``) makes a VFR clip."""
    w, h = size
    tb = time_base or 1 / rate
    pts = list(pts) if pts is not None else list(range(frames))
    with av.open(str(path), "w") as out:
        if timecode:
            out.metadata["timecode"] = timecode
        v = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.codec_context.time_base = tb
        a = None
        if audio:
            a = out.add_stream(audio, rate=48000)
            a.layout = "stereo"
            a.format = "fltp" if audio == "aac" else "s32"
        samples = 0
        last = Fraction(pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)) * tb
        for i, p in enumerate(pts):
            img = np.full((h, w, 3), (i * 20) % 256, np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = p, tb
            for pk in v.encode(vf):
                out.mux(pk)
            until = Fraction(pts[i + 1]) * tb if i + 1 < len(pts) else last
            while a is not None and Fraction(samples, 48000) < until:
                x = (np.sin(np.arange(samples, samples + 1024) / 9.0) * 0.3).astype(np.float32)
                if audio == "aac":
                    af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
                else:
                    il = np.stack([x, x], 1).reshape(1, -1)
                    af = av.AudioFrame.from_ndarray((il * 2**30).astype(np.int32), format="s32", layout="stereo")
                af.sample_rate, af.pts, af.time_base = 48000, samples, Fraction(1, 48000)
                for pk in a.encode(af):
                    out.mux(pk)
                samples += 1024
        for pk in v.encode():
            out.mux(pk)
        if a is not None:
            for pk in a.encode():
                out.mux(pk)
    return str(path)


def probe_clip(path, first_frame=1001) -> SourceInfo:
    """SourceInfo as a reader builds it: pts table from packets, timecode."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(v) if p.pts is not None)
        tc = v.metadata.get("timecode") or c.metadata.get("timecode")
        for s in c.streams.data:
            tc = tc or s.metadata.get("timecode")
        nominal = 1 / (v.average_rate * v.time_base)
        vfr = any(abs((b - a) - nominal) > 1 for a, b in zip(pts, pts[1:]))
        audio = tuple(AudioStreamInfo(s.index, s.codec_context.name, s.sample_rate, s.channels)
                      for s in c.streams.audio)
        return SourceInfo(path=str(path), kind="movie", format=c.format.name, codec=v.codec_context.name,
                          width=v.codec_context.width, height=v.codec_context.height,
                          pix_fmt=v.codec_context.pix_fmt, bit_depth=8, rate=Fraction(v.average_rate),
                          time_base=Fraction(v.time_base),
                          frame_numbers=tuple(range(first_frame, first_frame + len(pts))), pts=tuple(pts),
                          vfr=vfr, timecode=tc, audio=audio)


def grey(info_or_size, level: float) -> np.ndarray:
    w, h = info_or_size if isinstance(info_or_size, tuple) else (info_or_size.width, info_or_size.height)
    return np.full((h, w, 3), level, np.float32)


def target_for(info: SourceInfo, path, codec="prores_hq", *, indices=None, size=None, options=None, **kw):
    w, h = size or (info.width, info.height)
    idx = range(info.frame_count) if indices is None else indices
    return OutputTarget(path=str(path), codec=codec, width=w, height=h, source=info,
                        frame_numbers=tuple(info.frame_numbers[i] for i in idx),
                        options=validate_movie_options(codec, options or {}), **kw)


def write_movie(info: SourceInfo, path, codec="prores_hq", *, indices=None, size=None, image=None, **kw) -> str:
    """Write frames ``indices`` of ``info`` (default all) through MovieWriter."""
    tgt = target_for(info, path, codec, indices=indices, size=size, **kw)
    idx = range(info.frame_count) if indices is None else indices
    with MovieWriter(tgt) as w:
        for i in idx:
            rgb = image(i) if image else grey((tgt.width, tgt.height), (i % 5) / 4)
            w.write(Frame(number=info.frame_numbers[i], index=i, rgb=rgb))
    return tgt.path


def audio_digest(path) -> tuple[str, list[int], int]:
    """(md5 of every audio packet payload, first two pts, packet count)."""
    h, pts = hashlib.md5(), []
    with av.open(str(path)) as c:
        for p in c.demux(*c.streams.audio):
            if p.dts is None:
                continue
            h.update(bytes(p))
            pts.append(p.pts)
    return h.hexdigest(), pts[:2], len(pts)


def movie_timecode(path) -> str | None:
    with av.open(str(path)) as c:
        tcs = {s.metadata.get("timecode") for s in c.streams if s.type in ("video", "data")}
        tcs.discard(None)
        assert len(tcs) <= 1, tcs
        return tcs.pop() if tcs else c.metadata.get("timecode")


def has_tmcd_track(path) -> bool:
    with av.open(str(path)) as c:
        return any(s.type == "data" and s.metadata.get("timecode") for s in c.streams)


def video_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None)


def raw_planes(frame) -> list[np.ndarray]:
    """The decoded frame's planes as (h, w) uint16 code values (padding cut)."""
    return [np.frombuffer(p, np.uint16).reshape(p.height, p.line_size // 2)[:, :p.width] for p in frame.planes]


def atom_payloads(path, name: bytes) -> list[bytes]:
    """Payloads of every atom ``name`` in a MOV (walks container atoms)."""
    data = open(path, "rb").read()
    found, containers = [], {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"}

    def walk(off, end, in_stsd=False):
        while off + 8 <= end:
            size, typ = struct.unpack(">I4s", data[off:off + 8])
            hdr = 8
            if size == 1:
                size, hdr = struct.unpack(">Q", data[off + 8:off + 16])[0], 16
            elif size == 0:
                size = end - off
            if size < hdr:
                return
            if typ == name:
                found.append(data[off + hdr:off + size])
            if typ in containers:
                walk(off + hdr, off + size)
            elif typ == b"stsd":
                walk(off + hdr + 8, off + size, True)  # version/flags + entry count
            elif in_stsd and typ in (b"apch", b"apco", b"apcs", b"apcn", b"ap4h", b"ap4x", b"AVdh"):
                walk(off + hdr + 78, off + size)  # visual sample entry header, then child atoms
            off += size

    walk(0, len(data))
    return found


@pytest.fixture(scope="module")
def clip_aac(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    return probe_clip(make_clip(d / "aac.mp4", frames=12, audio="aac", timecode="01:00:00:00"))


# ----------------------------------------------------------------- round trips


def test_prores_hq_round_trip_time_and_tags(clip_aac, tmp_path):
    out = write_movie(clip_aac, tmp_path / "m.mov", "prores_hq", audio=False)
    with av.open(out) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        assert v.frames == 12
        assert v.average_rate == NTSC_FILM
        assert v.time_base == Fraction(1, 24000)
        assert v.duration * v.time_base == Fraction(12 * 1001, 24000)  # frames / fps, exactly
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (1, 1, 1, 1)
        assert cc.codec_tag == "apch" and cc.profile == "HQ" and cc.pix_fmt == "yuv422p10le"
        assert v.metadata["encoder"] == "Apple ProRes 422 HQ"
        packets = [bytes(p) for p in c.demux(v) if p.dts is not None]
    assert all(p[12:16] == b"apl0" for p in packets)  # vendor in every frame header
    assert video_pts(out) == list(range(0, 12 * 1001, 1001))
    colr = atom_payloads(out, b"colr")
    assert colr and colr[0][:4] == b"nclc" and struct.unpack(">3H", colr[0][4:10]) == (1, 1, 1)
    assert atom_payloads(out, b"fiel") and atom_payloads(out, b"pasp")
    assert struct.unpack(">2I", atom_payloads(out, b"pasp")[0][:8]) == (1, 1)
    assert not atom_payloads(out, b"gama")
    assert not os.listdir(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["m.mov"]  # no temp left


@pytest.mark.parametrize("codec,suffix,size,tag,pix_fmt", [
    ("prores_proxy", ".mov", (64, 48), "apco", "yuv422p10le"),
    ("prores_lt", ".mov", (64, 48), "apcs", "yuv422p10le"),
    ("prores_standard", ".mov", (64, 48), "apcn", "yuv422p10le"),
    ("prores_4444", ".mov", (64, 48), "ap4h", "yuv444p12le"),  # the decoder outputs 4444 as 12-bit
    ("prores_4444xq", ".mov", (64, 48), "ap4x", "yuv444p12le"),
    ("dnxhr_hqx", ".mov", (256, 144), "AVdh", "yuv422p10le"),
    ("h264_10", ".mp4", (64, 48), "avc1", "yuv420p10le"),
    ("h265_10", ".mp4", (64, 48), "hvc1", "yuv420p10le"),
])
def test_codec_fourcc_and_format(tmp_path, codec, suffix, size, tag, pix_fmt):
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=4, size=size, timecode="10:00:00:00"))
    out = write_movie(info, tmp_path / f"o{suffix}", codec)
    with av.open(out) as c:
        v = c.streams.video[0]
        assert v.codec_context.codec_tag == tag
        assert v.codec_context.pix_fmt == pix_fmt
        assert v.frames == 4
        cc = v.codec_context
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (1, 1, 1, 1)
        assert len(list(c.decode(v))) == 4
    assert movie_timecode(out) == "10:00:00:00"


def test_h264_422_profile(tmp_path):
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=3))
    out = write_movie(info, tmp_path / "o.mov", "h264_10", options={"chroma": "422", "crf": 10})
    with av.open(out) as c:
        assert c.streams.video[0].codec_context.profile == "High 4:2:2"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv422p10le"


def test_dnxhr_in_mxf_keeps_timecode(tmp_path):
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=4, size=(256, 144), timecode="10:00:00:00",
                                audio="pcm_s24le"))
    out = write_movie(info, tmp_path / "o.mxf", "dnxhr_hqx")
    with av.open(out) as c:
        assert c.format.name == "mxf"
        assert c.metadata.get("timecode") == "10:00:00:00"
        assert len(list(c.decode(c.streams.video[0]))) == 4
        assert c.streams.audio[0].codec_context.name == "pcm_s24le"


@pytest.mark.parametrize("codec,size", [("prores_hq", (64, 48)), ("dnxhr_hqx", (256, 144)),
                                        ("prores_standard", (66, 48))])
def test_ten_bit_code_values_use_our_matrix(tmp_path, codec, size):
    """RGB 1.0 -> Y' 940 and 0.0 -> 64 (swscale would give 943); 66 px wide
    exercises the line padding of plane.update."""
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=2, size=size))
    out = write_movie(info, tmp_path / "o.mov", codec, image=lambda i: grey(size, 1.0 - i))
    with av.open(out) as c:
        frames = list(c.decode(c.streams.video[0]))
    for f, (y_want, c_want) in zip(frames, [(940, 512), (64, 512)]):
        y, cb, cr = raw_planes(f)
        assert y.shape == (size[1], size[0])
        assert np.all(y == y_want), (codec, np.unique(y))
        assert np.all(cb == c_want) and np.all(cr == c_want)


@pytest.mark.parametrize("codec,suffix,want_range", [("h264_10", ".mp4", 2), ("prores_hq", ".mov", 1)])
def test_target_colour_tags_and_matrix(tmp_path, codec, suffix, want_range):
    """BT.601 full range asked: H.264 signals it; ProRes has no range flag, so
    it is coded (and tagged) limited rather than misread later."""
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=1))
    colour = Colour(primaries=6, trc=6, matrix=6, range=2)
    opts = {"crf": 0, "preset": "ultrafast"} if codec == "h264_10" else {}
    red = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (48, 64, 1))
    out = write_movie(info, tmp_path / f"o{suffix}", codec, colour=colour, options=opts, image=lambda i: red)
    with av.open(out) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (6, 6, 6, want_range)
        y, cb, cr = raw_planes(next(c.decode(v)))
    if want_range == 2:  # BT.601 full-range red: Y' = 0.299 * 1023, Cr = 1023 (clipped)
        assert abs(int(y[0, 0]) - round(0.299 * 1023)) <= 1 and int(cr[0, 0]) == 1023
    else:  # limited: Y' = 64 + 0.299 * 876, Cr = 512 + 0.5 * 896
        assert abs(int(y[0, 0]) - round(64 + 0.299 * 876)) <= 1 and abs(int(cr[0, 0]) - 960) <= 1


# ----------------------------------------------------------------- timecode


@pytest.mark.parametrize("rate,tc,start,want", [
    (NTSC_FILM, "01:00:00:00", 5, "01:00:00:05"),
    (Fraction(30000, 1001), "00:00:59;29", 1, "00:01:00;02"),  # drop-frame skips ;00 and ;01
    (Fraction(30000, 1001), "00:00:59:29", 1, "00:01:00:00"),  # the same at non-drop
    (Fraction(25), "09:59:59:24", 3, "10:00:00:02"),
])
def test_chunk_timecode_is_source_plus_offset(tmp_path, rate, tc, start, want):
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=start + 3, rate=rate, timecode=tc))
    out = write_movie(info, tmp_path / "chunk.mov", indices=range(start, start + 3))
    assert movie_timecode(out) == want
    assert has_tmcd_track(out)
    assert video_pts(out)[0] == 0  # the chunk's position is in its timecode, not an empty edit
    assert offset_timecode(tc, rate, start) == want


def test_timecode_option_none_and_explicit(tmp_path, clip_aac):
    none = write_movie(clip_aac, tmp_path / "a.mov", options={"timecode": "none"}, audio=False)
    assert movie_timecode(none) is None and not has_tmcd_track(none)
    explicit = write_movie(clip_aac, tmp_path / "b.mov", indices=range(2, 4),
                           options={"timecode": "00:10:00:00"}, audio=False)
    assert movie_timecode(explicit) == "00:10:00:02"


# ----------------------------------------------------------------- audio


@pytest.mark.parametrize("audio,container", [("aac", ".mov"), ("pcm_s24le", ".mov"), ("aac", ".mp4")])
def test_audio_copied_bit_exact(tmp_path, audio, container):
    src = make_clip(tmp_path / "s.mov", frames=12, audio=audio, timecode="01:00:00:00")
    info = probe_clip(src)
    codec = "prores_hq" if container == ".mov" else "h264_10"
    out = write_movie(info, tmp_path / f"o{container}", codec)
    md5_src, first_src, n_src = audio_digest(src)
    md5_out, first_out, n_out = audio_digest(out)
    assert (md5_out, first_out, n_out) == (md5_src, first_src, n_src)
    if audio == "aac":
        assert first_out[0] == -1024  # priming kept, so A/V offset unchanged
    assert video_pts(out) == list(range(0, 12 * 1001, 1001))


def test_audio_left_out_of_a_chunk(clip_aac, tmp_path):
    out = write_movie(clip_aac, tmp_path / "c.mov", indices=range(3, 6))
    with av.open(out) as c:
        assert not c.streams.audio


def test_audio_false_writes_no_audio(clip_aac, tmp_path):
    out = write_movie(clip_aac, tmp_path / "c.mov", audio=False)
    with av.open(out) as c:
        assert not c.streams.audio


def test_mxf_takes_aac_audio_as_pcm(clip_aac, tmp_path):
    # issue 11 item 4: MXF holds PCM only, so AAC is decoded to PCM (same rate and layout), not refused.
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=2, size=(256, 144), audio="aac"))
    out = write_movie(info, tmp_path / "o.mxf", "dnxhr_hqx")
    with av.open(str(out)) as c:
        a = c.streams.audio[0].codec_context
        assert a.name in ("pcm_s16le", "pcm_s24le") and (a.sample_rate, a.channels) == (48000, 2)


# ----------------------------------------------------------------- VFR


@pytest.mark.parametrize("codec,suffix", [("prores_hq", ".mov"), ("h264_10", ".mp4")])
def test_vfr_pts_preserved(tmp_path, codec, suffix):
    deltas = [640, 800, 1280, 1440, 640, 640, 800]
    pts = [0, *itertools.accumulate(deltas)]
    info = probe_clip(make_clip(tmp_path / "vfr.mp4", pts=pts, time_base=Fraction(1, 16000), rate=Fraction(25)))
    assert info.vfr and list(info.pts) == pts
    out = write_movie(info, tmp_path / f"o{suffix}", codec)
    assert video_pts(out) == pts
    with av.open(out) as c:
        assert c.streams.video[0].time_base == Fraction(1, 16000)


def test_index_based_pts_without_a_table(clip_aac, tmp_path):
    info = SourceInfo(**{**clip_aac.__dict__, "pts": ()})
    out = write_movie(info, tmp_path / "o.mov", indices=range(4, 8), audio=False)
    assert video_pts(out) == [0, 1001, 2002, 3003]


# ----------------------------------------------------------------- crash safety


def test_temp_name_until_close_and_abort_removes_it(clip_aac, tmp_path):
    tgt = target_for(clip_aac, tmp_path / "m.mov", audio=False)
    w = MovieWriter(tgt)
    for i in range(12):  # enough to get past frame-threading delay, so packets reach the file
        w.write(Frame(number=1001 + i, index=i, rgb=grey(clip_aac, 0.5)))
    names = os.listdir(tmp_path)
    assert names == [f".m.partial-{os.getpid()}.mov"]
    w.abort()
    assert os.listdir(tmp_path) == []
    w2 = MovieWriter(tgt)
    w2.write(Frame(number=1001, index=0, rgb=grey(clip_aac, 0.5)))
    assert w2.close() == [str(tmp_path / "m.mov")]
    assert os.listdir(tmp_path) == ["m.mov"]


def test_closing_without_frames_publishes_nothing(clip_aac, tmp_path):
    w = MovieWriter(target_for(clip_aac, tmp_path / "m.mov"))
    assert w.close() == []
    assert os.listdir(tmp_path) == []


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from fractions import Fraction
    import numpy as np
    from cinescale_post.contracts.media import Frame, OutputTarget, SourceInfo
    from cinescale_post.media.movie_codecs import validate_movie_options
    from cinescale_post.media.movie_writer import MovieWriter
    out, n_kill = sys.argv[1], int(sys.argv[2])
    src = SourceInfo(path="gen", kind="movie", format="mov", codec="prores", width=64, height=48,
                     pix_fmt="yuv422p10le", bit_depth=10, rate=Fraction(24000, 1001),
                     time_base=Fraction(1, 24000), frame_numbers=tuple(range(1001, 1049)),
                     timecode="01:00:00:00")
    tgt = OutputTarget(path=out, codec="prores_hq", width=64, height=48, source=src,
                       frame_numbers=src.frame_numbers, audio=False,
                       options=validate_movie_options("prores_hq", {"fragment_seconds": 0.25}))
    w = MovieWriter(tgt)
    rng = np.random.default_rng(0)
    for i in range(48):
        if i == n_kill:
            os.kill(os.getpid(), signal.SIGKILL)
        w.write(Frame(number=1001 + i, index=i, rgb=rng.random((48, 64, 3), dtype=np.float32)))
    w.close()
""")


def test_killed_writer_leaves_readable_partial_and_no_final_file(tmp_path):
    out = tmp_path / "master.mov"
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(out), "30"], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not out.exists()
    partials = [p for p in os.listdir(tmp_path) if p.startswith(".master.partial-")]
    assert len(partials) == 1
    with av.open(str(tmp_path / partials[0])) as c:  # hybrid fragmented: flushed fragments decode
        decoded = len(list(c.decode(c.streams.video[0])))
        assert c.streams.video[0].metadata.get("timecode") == "01:00:00:00"
    assert 1 <= decoded <= 30


def test_finished_hybrid_movie_is_not_fragmented(clip_aac, tmp_path):
    out = write_movie(clip_aac, tmp_path / "m.mov", options={"fragment_seconds": 0.1}, audio=False)
    data, top, off = open(out, "rb").read(), [], 0
    while off < len(data):  # top-level atoms; old fragments stay as payload inside mdat
        size, typ = struct.unpack(">I4s", data[off:off + 8])
        top.append(typ)
        off += size
    assert b"moof" not in top and top.count(b"moov") == 1 and off == len(data)


# ----------------------------------------------------------------- bad plans and bad places


@pytest.mark.parametrize("codec,options,key", [
    ("prores_hq", {"pix_fmt": "yuv444p10le"}, "pix_fmt"),
    ("prores_4444", {"pix_fmt": "yuv422p10le"}, "pix_fmt"),
    ("dnxhr_hqx", {"pix_fmt": "yuv422p"}, "pix_fmt"),
    ("h264_10", {"chroma": "444"}, "chroma"),
    ("h264_10", {"chroma": "422", "pix_fmt": "yuv420p10le"}, "pix_fmt"),
    ("h265_10", {"crf": 99}, "crf"),
    ("h265_10", {"preset": "ludicrous"}, "preset"),
    ("prores_hq", {"threads": -1}, "threads"),
    ("prores_hq", {"timecode": "1:00:00"}, "timecode"),
    ("prores_hq", {"crf": 10}, "crf"),  # not a ProRes option
    ("prores_hq", {"fragment_seconds": 0}, "fragment_seconds"),
])
def test_bad_movie_options_raise_plan_error(codec, options, key):
    with pytest.raises(PlanError) as e:
        validate_movie_options(codec, options)
    msg = str(e.value)
    assert codec in msg and key in msg
    assert e.value.fix  # says what is allowed


def test_movie_options_defaults_filled():
    assert validate_movie_options("prores_hq", {}) == {
        "pix_fmt": "yuv422p10le", "threads": 0, "timecode": "auto", "fragment_seconds": 1.0}
    h = validate_movie_options("h264_10", {"chroma": 422})
    assert h["chroma"] == "422" and h["pix_fmt"] == "yuv422p10le" and h["crf"] == 16


@pytest.mark.parametrize("codec,name,size,match", [
    ("prores_hq", "o.mp4", (64, 48), "cannot be written"),
    ("dnxhr_hqx", "o.mov", (64, 48), "at least 256x120"),
    ("h264_10", "o.mp4", (63, 48), "even dimensions"),
])
def test_bad_targets_raise_plan_error(clip_aac, tmp_path, codec, name, size, match):
    with pytest.raises(PlanError, match=match):
        MovieWriter(target_for(clip_aac, tmp_path / name, codec, size=size, audio=False))
    assert os.listdir(tmp_path) == []


def test_unwritable_directory_raises_output_error(clip_aac, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as e:
        MovieWriter(target_for(clip_aac, blocker / "out" / "m.mov", audio=False))
    assert "file" in str(e.value) and e.value.fix and e.value.exit_code == 4


_FSIZE_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    from fractions import Fraction
    import numpy as np
    from cinescale_post.contracts.errors import OutputError
    from cinescale_post.contracts.media import Frame, OutputTarget, SourceInfo
    from cinescale_post.media.movie_codecs import validate_movie_options
    from cinescale_post.media.movie_writer import MovieWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    src = SourceInfo(path="gen", kind="movie", format="mov", codec="prores", width=64, height=48,
                     pix_fmt="yuv422p10le", bit_depth=10, rate=Fraction(24),
                     time_base=Fraction(1, 24), frame_numbers=tuple(range(200)))
    tgt = OutputTarget(path=sys.argv[1], codec="prores_hq", width=64, height=48, source=src,
                       frame_numbers=src.frame_numbers, audio=False,
                       options=validate_movie_options("prores_hq", {"fragment_seconds": 0.1}))
    w = MovieWriter(tgt)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000))
    rng = np.random.default_rng(0)
    try:
        for i in range(200):
            w.write(Frame(number=i, index=i, rgb=rng.random((48, 64, 3), dtype=np.float32)))
        w.close()
    except OutputError as exc:
        print("OutputError", exc)
        sys.exit(4)
""")


def test_write_failure_maps_to_output_error_and_cleans_up(tmp_path):
    """A file-size limit stands in for a full disk: the write fails part way."""
    out = tmp_path / "m.mov"
    proc = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(out)], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert str(out) in proc.stdout and "fix:" in proc.stdout
    assert os.listdir(tmp_path) == []


def test_output_error_names_disk_full():
    import errno

    from cinescale_post.media.publish import output_error

    err = output_error("/x/y.mov", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, OutputError) and "disk full" in str(err) and "/x/y.mov" in str(err)


# ----------------------------------------------------------------- PNG / TIFF 16-bit


def image_target(tmp_path, codec, pattern, options=None):
    from cinescale_post.media.image_writer import validate_image_options

    src = SourceInfo(path="plate.####.exr", kind="sequence", format="exr", codec="exr", width=32, height=16,
                     pix_fmt="rgb", bit_depth=16, rate=Fraction(24), time_base=Fraction(1, 24),
                     frame_numbers=(1001, 1002))
    return OutputTarget(path=str(tmp_path / pattern), codec=codec, width=32, height=16, source=src,
                        frame_numbers=src.frame_numbers, options=validate_image_options(codec, options or {}))


@pytest.mark.parametrize("codec,pattern,options", [
    ("png16", "sh.%04d.png", {}),
    ("tiff16", "sh.####.tif", {}),
    ("tiff16", "sh.####.tiff", {"compression": "none"}),
])
def test_png_tiff_16bit_values(tmp_path, codec, pattern, options):
    import cv2

    from cinescale_post.media.image_writer import ImageWriter

    rng = np.random.default_rng(1)
    rgb = rng.random((16, 32, 3), dtype=np.float32) * 1.2 - 0.1  # out-of-range values get clipped
    rgb[0, 0] = (1.0, 0.0, 0.5)
    with ImageWriter(image_target(tmp_path, codec, pattern, options)) as w:
        w.write(Frame(number=1001, index=0, rgb=rgb))
        w.write(Frame(number=1002, index=1, rgb=rgb[::-1].copy()))
    paths = w.close()
    suffix = pattern.rsplit(".", 1)[1]
    assert [os.path.basename(p) for p in paths] == [f"sh.1001.{suffix}", f"sh.1002.{suffix}"]
    assert sorted(os.listdir(tmp_path)) == [f"sh.1001.{suffix}", f"sh.1002.{suffix}"]
    back = cv2.imread(paths[0], cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (16, 32, 3)
    want = np.rint(np.clip(rgb, 0, 1) * 65535).astype(np.uint16)
    assert np.array_equal(back[..., ::-1], want)  # stored BGR, values exact
    assert tuple(back[0, 0][::-1]) == (65535, 0, 32768)


def test_image_writer_bad_option_and_no_frame_token(tmp_path):
    from cinescale_post.media.image_writer import ImageWriter, validate_image_options

    with pytest.raises(PlanError, match="compression"):
        validate_image_options("png16", {"compression": 12})
    with pytest.raises(PlanError, match="compression"):
        validate_image_options("tiff16", {"compression": "jpeg"})
    with pytest.raises(PlanError, match="frame token"):
        ImageWriter(image_target(tmp_path, "png16", "still.png"))


def test_image_write_failure_leaves_no_file(tmp_path, monkeypatch):
    import errno

    import cinescale_post.media.image_writer as image_writer

    def full(path, data):
        with open(path, "wb") as f:
            f.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_writer, "write_bytes", full)
    w = image_writer.ImageWriter(image_target(tmp_path, "png16", "sh.%04d.png"))
    with pytest.raises(OutputError, match="disk full"):
        w.write(Frame(number=1001, index=0, rgb=np.zeros((16, 32, 3), np.float32)))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- plugin registration


def test_builtin_writers_registered_through_the_host():
    from cinescale_post.pipeline.host import Host

    host = Host(load_entrypoints=False)
    movie = host.writer("prores_hq")
    assert movie.name == "movie" and not movie.per_frame
    assert set(movie.codecs) == {"prores_proxy", "prores_lt", "prores_standard", "prores_hq", "prores_4444",
                                 "prores_4444xq", "dnxhr_hqx", "h264_10", "h265_10"}
    assert {".mov", ".mxf", ".mp4"} <= set(movie.suffixes)
    exr = host.writer("exr")
    assert exr.per_frame and exr.suffixes == (".exr",)
    assert exr.validate_options("exr", {})["compression"] == "piz"
    for codec, suffix in (("png16", ".png"), ("tiff16", ".tif")):
        f = host.writer(codec)
        assert f.per_frame and suffix in f.suffixes
    with pytest.raises(PlanError):
        movie.validate_options("prores_hq", {"pix_fmt": "yuv444p10le"})
