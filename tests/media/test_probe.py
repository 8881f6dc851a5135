"""probe / open_input: reader choice through the host, reports, and bad input.

Each bad input must raise InputError (exit code 3) whose message names the
file and whose ``fix`` says what to do.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import numpy as np
import pytest

from cinescale_post import hookimpl
from cinescale_post.contracts.errors import InputError, PluginError
from cinescale_post.pipeline.host import Host
from cinescale_post.contracts.media import Reader, ReaderFactory, SourceInfo
from cinescale_post.media.probe import format_probe, open_input, probe, probe_dict, sequence_hints
from cinescale_post.testing import make_clip, make_sequence


@pytest.fixture(scope="module")
def host():
    return Host(load_entrypoints=False)


def _cut(src, dst, fraction):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _input_error(path, host, *fragments):
    """Probe ``path``; assert InputError naming the file and every fragment."""
    with pytest.raises(InputError) as err:
        probe(path, host=host)
    message = str(err.value)
    assert os.path.basename(str(path)) in message
    for fragment in fragments:
        assert fragment in message, message
    assert err.value.fix and err.value.exit_code == 3
    return err.value


# ---------------------------------------------------------------- reader choice


def test_builtin_readers_registered_and_chosen(tmp_path, host):
    assert {"pyav-movie", "image-sequence"} <= set(host.readers())
    assert host.reader_for(str(tmp_path / "a.mov")).name == "pyav-movie"
    assert host.reader_for(str(tmp_path / "a.####.exr")).name == "image-sequence"
    assert host.reader_for(str(tmp_path / "a.%04d.dpx")).name == "image-sequence"
    assert host.reader_for(str(tmp_path / "still.png")).name == "image-sequence"


class _FakeReader(Reader):
    def __init__(self, path):
        self.info = SourceInfo(path=path, kind="movie", format="fake", codec="fake", width=2, height=2,
                               pix_fmt="rgb24", bit_depth=8, rate=Fraction(24), time_base=Fraction(1, 24),
                               frame_numbers=(1,))

    def read(self, numbers):
        return iter(())


def test_third_party_reader_with_higher_priority_wins(tmp_path):
    class Plugin:
        @hookimpl
        def register_readers(self, register):
            register(ReaderFactory(name="fake", kind="movie", accepts=lambda p: p.endswith(".mov"),
                                   open=lambda p, first_frame=1001: _FakeReader(p), priority=10))

    path = make_clip(tmp_path / "a.mov", frames=1)
    host = Host(load_entrypoints=False, extra_plugins=(Plugin(),))
    assert probe(path, host=host).format == "fake"


def test_broken_reader_plugin_is_a_plugin_error(tmp_path):
    def explode(path, first_frame=1001):
        raise RuntimeError("boom")

    class Plugin:
        @hookimpl
        def register_readers(self, register):
            register(ReaderFactory(name="broken", kind="movie", accepts=lambda p: True, open=explode, priority=10))

    path = make_clip(tmp_path / "a.mov", frames=1)
    with pytest.raises(PluginError, match="reader 'broken' failed on .*a.mov: RuntimeError: boom"):
        probe(path, host=Host(load_entrypoints=False, extra_plugins=(Plugin(),)))


# ---------------------------------------------------------------- reports


def test_probe_dict_is_json_and_complete(tmp_path, host):
    path = make_clip(tmp_path / "a.mov", frames=12, rate=Fraction(24000, 1001), timecode="01:00:00:00",
                     audio="pcm_s24le", rotation=90)
    d = json.loads(json.dumps(probe_dict(probe(path, host=host))))
    assert d["rate"] == "24000/1001" and d["time_base"] == "1/24000"
    assert (d["frame_count"], d["first_frame"], d["last_frame"]) == (12, 1001, 1012)
    assert (d["display_width"], d["display_height"], d["rotation"]) == (48, 64, 90)
    assert d["duration_s"] == pytest.approx(12 * 1001 / 24000)
    assert d["timecode"] == "01:00:00:00"
    assert d["colour"]["names"] == {"primaries": "bt709", "trc": "bt709", "matrix": "bt709", "range": "limited"}
    assert d["audio"] == [{"index": 1, "codec": "pcm_s24le", "sample_rate": 48000, "channels": 2,
                           "label": "pcm_s24le 48000 Hz 2 ch"}]
    assert len(d["pts_sha1"]) == 40 and d["missing_ranges"] == ""


def test_format_probe_table(tmp_path, host):
    make_sequence(tmp_path / "sh.####.exr", range(1, 7), skip=[3, 4])
    text = format_probe(probe(tmp_path / "sh.####.exr", host=host))
    assert "1-6 (4 frames), missing 3-4" in text
    assert "24.000 fps" in text and "transfer linear" in text
    movie = format_probe(probe(make_clip(tmp_path / "v.mp4", codec="libx264", vfr=True, frames=6), host=host))
    assert "VARIABLE frame rate" in movie and "h264 64x48 yuv420p, 8-bit" in movie


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path, host):
    _input_error(tmp_path / "nope.mov", host, "does not exist")


def test_pattern_without_matches_names_pattern_and_hints(tmp_path, host):
    make_sequence(tmp_path / "sh010.#####.exr", [1001, 1002])  # 5 digits on disk
    err = _input_error(tmp_path / "sh010.####.exr", host, "no files match the pattern", "4-digit")
    assert "sh010.#####.exr (1001-1002)" in err.fix


def test_directory_is_refused_with_hint(tmp_path, host):
    make_sequence(tmp_path / "plates" / "sh010_v001.####.png", [1, 2, 3], kind="png")
    err = _input_error(tmp_path / "plates", host, "is a folder")
    assert "sh010_v001.####.png (1-3)" in err.fix
    assert sequence_hints(str(tmp_path / "plates")) == [str(tmp_path / "plates" / "sh010_v001.####.png") + " (1-3)"]


@pytest.mark.parametrize("name, data", [("notes.txt", b"hello\n" * 100), ("noise.mov", os.urandom(4000))])
def test_not_media(tmp_path, host, name, data):
    (tmp_path / name).write_bytes(data)
    _input_error(tmp_path / name, host, "is not a media file")


def test_empty_file(tmp_path, host):
    (tmp_path / "empty.mov").write_bytes(b"")
    _input_error(tmp_path / "empty.mov", host, "is empty")


def test_mov_without_moov_is_truncated(tmp_path, host):
    src = make_clip(tmp_path / "full.mov", frames=24)  # moov is written last
    err = _input_error(_cut(src, tmp_path / "cut.mov", 0.5), host, "truncated or incomplete")
    assert "re-export it or copy it again" in err.fix


def test_faststart_mov_missing_data_is_truncated(tmp_path, host):
    src = make_clip(tmp_path / "fs.mov", frames=24, container_options={"movflags": "+faststart"})
    _input_error(_cut(src, tmp_path / "fs_cut.mov", 0.6), host, "truncated or incomplete", "lists 24 frames")


def test_mkv_cut_short_is_truncated(tmp_path, host):
    src = make_clip(tmp_path / "full.mkv", frames=24)  # no frame count: the declared duration tells
    _input_error(_cut(src, tmp_path / "cut.mkv", 0.6), host, "truncated or incomplete", "declares 1.000 s")


def test_zero_frame_clip(tmp_path, host):
    path = tmp_path / "zero.avi"
    with av.open(str(path), "w") as out:  # header written, no packet
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    _input_error(path, host, "has no video frames")


def test_audio_only_file(tmp_path, host):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.int16), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    _input_error(path, host, "has no video stream")


def test_undecodable_frame_names_file_and_frame(tmp_path, host):
    src = make_clip(tmp_path / "ok.mov", frames=6, container_options={"movflags": "+faststart"})
    with av.open(str(src)) as c:
        last = [p for p in c.demux(c.streams.video[0]) if p.size][-1]
        pos, size = last.pos, last.size
    # Zero the last frame's payload: the index is intact, so probing works;
    # decoding that frame must fail and say which one.
    data = bytearray(src.read_bytes())
    data[pos:pos + size] = bytes(size)
    bad = tmp_path / "bad.mov"
    bad.write_bytes(bytes(data))
    with open_input(bad, host=host) as reader:
        frames = reader.read(reader.info.frame_numbers)
        assert [next(frames).number for _ in range(5)] == [1001, 1002, 1003, 1004, 1005]
        with pytest.raises(InputError, match=r"bad\.mov: frame 1006 cannot be decoded"):
            next(frames)


def test_sequence_with_missing_frame(tmp_path, host):
    make_sequence(tmp_path / "gap.####.exr", [1001, 1002, 1004])
    info = probe(tmp_path / "gap.####.exr", host=host)  # opening reports, does not raise
    assert info.missing == (1003,)
    with open_input(tmp_path / "gap.####.exr", host=host) as reader:
        with pytest.raises(InputError, match=r"frame 1003 of .*gap\.####\.exr is missing") as err:
            list(reader.read(range(1001, 1005)))
    assert "missing frames" in err.value.fix


def test_damaged_exr_frame_names_file_and_frame(tmp_path, host):
    paths = make_sequence(tmp_path / "dmg.####.exr", [1, 2], size=(256, 128))
    _cut(paths[1], paths[1], 0.5)  # a half-written EXR still has a valid header
    with open_input(tmp_path / "dmg.####.exr", host=host) as reader:
        with pytest.raises(InputError, match=r"dmg\.0002\.exr: frame 2 cannot be read"):
            list(reader.read([1, 2]))
