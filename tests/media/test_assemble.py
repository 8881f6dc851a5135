"""Chunked renders joined by packet copy: frames, timing, audio and timecode
of the master must equal a single-pass render of the same source."""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import av
import numpy as np
import pytest

from cinescale_post.contracts.errors import InputError, OutputError, PlanError
from cinescale_post.media.assemble import concat_movies

from .test_writers import (audio_digest, has_tmcd_track, make_clip, movie_timecode, probe_clip, video_pts,
                           write_movie)

CHUNKS = [range(0, 4), range(4, 8), range(8, 12)]


def burn(i: int) -> np.ndarray:
    """Frame i as a distinct flat grey, so order mistakes show in the pixels."""
    return np.full((48, 64, 3), i / 16.0, np.float32)


def write_chunks(info, folder, chunks=CHUNKS, codec="prores_hq", size=None):
    paths = []
    for k, idx in enumerate(chunks):
        paths.append(write_movie(info, folder / f"chunk{k}.mov", codec, indices=idx, size=size,
                                 image=None if size else burn, audio=False))
    return paths


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("asm")
    return probe_clip(make_clip(d / "src.mp4", frames=12, audio="aac", timecode="01:00:00:00"))


def test_three_chunks_equal_a_single_pass(source, tmp_path):
    chunks = write_chunks(source, tmp_path)
    for k, p in enumerate(chunks):  # each chunk stands alone: pts from 0, its own timecode
        assert video_pts(p)[0] == 0
        assert movie_timecode(p) == f"01:00:00:{4 * k:02d}"
    out = concat_movies(chunks, str(tmp_path / "master.mov"), source=source)
    assert out == str(tmp_path / "master.mov")
    single = write_movie(source, tmp_path / "single.mov", image=burn)

    assert video_pts(out) == list(range(0, 12 * 1001, 1001))  # continuous
    with av.open(out) as c, av.open(single) as s:
        v = c.streams.video[0]
        assert v.frames == 12 and v.time_base == Fraction(1, 24000) and v.average_rate == Fraction(24000, 1001)
        assert v.duration * v.time_base == Fraction(12 * 1001, 24000)
        cc = v.codec_context
        assert (cc.codec_tag, cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (
            "apch", 1, 1, 1, 1)
        assert v.metadata.get("encoder") == "Apple ProRes 422 HQ"
        joined = [bytes(p) for p in c.demux(v) if p.dts is not None]
        whole = [bytes(p) for p in s.demux(s.streams.video[0]) if p.dts is not None]
    assert joined == whole  # same frames, same order, bit for bit
    assert movie_timecode(out) == "01:00:00:00" and has_tmcd_track(out)
    assert audio_digest(out) == audio_digest(source.path)
    assert audio_digest(out)[1][0] == -1024  # AAC priming kept
    assert sorted(os.listdir(tmp_path)) == ["chunk0.mov", "chunk1.mov", "chunk2.mov", "master.mov", "single.mov"]


def test_faststart_layout(source, tmp_path):
    out = concat_movies(write_chunks(source, tmp_path), str(tmp_path / "m.mov"), source=source)
    data = open(out, "rb").read()
    assert data.index(b"moov") < data.index(b"mdat")


def test_vfr_chunks_get_source_timing_back(tmp_path):
    pts = [0, *itertools.accumulate([640, 800, 1280, 1440, 640, 640, 800, 960])]
    info = probe_clip(make_clip(tmp_path / "vfr.mp4", pts=pts, time_base=Fraction(1, 16000), rate=Fraction(25)))
    chunks = write_chunks(info, tmp_path, [range(0, 3), range(3, 7), range(7, 9)])
    assert video_pts(chunks[1]) == [p - pts[3] for p in pts[3:7]]
    out = concat_movies(chunks, str(tmp_path / "m.mov"), source=info, audio=False)
    assert video_pts(out) == pts


def test_partial_range_offsets_timecode_and_skips_audio(source, tmp_path):
    chunks = write_chunks(source, tmp_path, [range(4, 8), range(8, 12)])
    out = concat_movies(chunks, str(tmp_path / "m.mov"), source=source, timecode_offset_frames=4)
    assert movie_timecode(out) == "01:00:00:04"
    assert video_pts(out) == list(range(0, 8 * 1001, 1001))
    with av.open(out) as c:
        assert not c.streams.audio  # packet copy cannot trim audio sample-accurately


def test_drop_frame_timecode_survives(tmp_path):
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=6, rate=Fraction(30000, 1001), timecode="00:00:59;28"))
    chunks = write_chunks(info, tmp_path, [range(0, 3), range(3, 6)])
    assert movie_timecode(chunks[1]) == "00:01:00;03"
    out = concat_movies(chunks, str(tmp_path / "m.mov"), source=info)
    assert movie_timecode(out) == "00:00:59;28" and has_tmcd_track(out)


def test_out_of_order_chunks_are_refused(source, tmp_path):
    a, b, c = write_chunks(source, tmp_path)
    with pytest.raises(InputError, match="chunk2.mov starts at timecode 01:00:00:08, expected 01:00:00:04"):
        concat_movies([a, c, b], str(tmp_path / "m.mov"), source=source)
    with pytest.raises(InputError, match="missing, repeated or out of order"):
        concat_movies([a, a, b], str(tmp_path / "m.mov"), source=source)
    assert not (tmp_path / "m.mov").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_mismatched_chunks_are_refused(source, tmp_path):
    a = write_movie(source, tmp_path / "a.mov", indices=range(0, 4), audio=False)
    b = write_movie(source, tmp_path / "b.mov", "prores_lt", indices=range(4, 8), audio=False)
    with pytest.raises(InputError, match="does not match"):
        concat_movies([a, b], str(tmp_path / "m.mov"), source=source)
    big = write_movie(source, tmp_path / "c.mov", indices=range(4, 8), size=(96, 48), audio=False)
    with pytest.raises(InputError, match="96x48"):
        concat_movies([a, big], str(tmp_path / "m.mov"), source=source)


def test_missing_and_long_gop_chunks_are_refused(source, tmp_path):
    a = write_movie(source, tmp_path / "a.mov", indices=range(0, 4), audio=False)
    with pytest.raises(InputError, match="does not exist"):
        concat_movies([a, str(tmp_path / "nope.mov")], str(tmp_path / "m.mov"), source=source)
    h1 = write_movie(source, tmp_path / "h1.mov", "h264_10", indices=range(0, 6), audio=False)
    h2 = write_movie(source, tmp_path / "h2.mov", "h264_10", indices=range(6, 12), audio=False)
    with pytest.raises(InputError, match="inter-frame"):
        concat_movies([h1, h2], str(tmp_path / "m.mov"), source=source)
    with pytest.raises(InputError, match="no chunks"):
        concat_movies([], str(tmp_path / "m.mov"), source=source)


def test_one_long_gop_chunk_is_remuxed_whole(source, tmp_path):
    """A one-chunk H.264/H.265 render (output.chunk = 0) has nothing to join:
    its packets are copied in decode order (B-frames keep dts < pts)."""
    h = write_movie(source, tmp_path / "h.mov", "h264_10", indices=range(0, 12), audio=False)
    out = concat_movies([h], str(tmp_path / "m.mov"), source=source)
    with av.open(h) as a, av.open(out) as b:
        want = [f.to_ndarray().tobytes() for f in a.decode(video=0)]
        got = [f.to_ndarray().tobytes() for f in b.decode(video=0)]
        assert b.streams.video[0].codec_context.codec_tag == a.streams.video[0].codec_context.codec_tag
    assert len(got) == 12 and got == want


def test_too_many_frames_for_the_source(source, tmp_path):
    chunks = write_chunks(source, tmp_path)
    with pytest.raises(InputError, match="source has 12"):
        concat_movies(chunks, str(tmp_path / "m.mov"), source=source, timecode_offset_frames=4)


def test_bad_output_place(source, tmp_path):
    chunks = write_chunks(source, tmp_path, [range(0, 12)])
    with pytest.raises(PlanError, match=r"\.mov"):
        concat_movies(chunks, str(tmp_path / "m.mkv"), source=source)
    with pytest.raises(PlanError, match=r"(?s)hold H.264/H.265, not prores.*m\.mov"):  # ProRes chunks
        concat_movies(chunks, str(tmp_path / "m.mp4"), source=source)
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputError) as e:
        concat_movies(chunks, str(tmp_path / "f" / "m.mov"), source=source)
    assert e.value.exit_code == 4 and e.value.fix
