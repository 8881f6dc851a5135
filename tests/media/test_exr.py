"""EXR sequences: header attributes and pixels read back with OpenEXR directly."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import OpenEXR
import pytest

from cinescale_post.contracts.errors import OutputError, PlanError
from cinescale_post.contracts.media import Colour, Frame, OutputTarget, SourceInfo
from cinescale_post.media.colour import CHROMATICITIES
from cinescale_post.media.exr import COMPRESSIONS, ExrWriter, validate_exr_options

W, H = 48, 32


def movie_source(timecode="01:00:10:00", rate=Fraction(24000, 1001), frames=10) -> SourceInfo:
    return SourceInfo(path="/plates/sh010.mov", kind="movie", format="mov", codec="prores", width=W, height=H,
                      pix_fmt="yuv422p10le", bit_depth=10, rate=rate, time_base=1 / rate,
                      frame_numbers=tuple(range(1001, 1001 + frames)), timecode=timecode)


def exr_target(tmp_path, source=None, pattern="sh010.%04d.exr", options=None, colour=Colour(), metadata=None,
               numbers=None):
    source = source or movie_source()
    return OutputTarget(path=str(tmp_path / pattern), codec="exr", width=W, height=H, source=source,
                        frame_numbers=tuple(numbers or source.frame_numbers),
                        options=validate_exr_options("exr", options or {}), colour=colour,
                        metadata=metadata or {})


def image(seed=3) -> np.ndarray:
    """Values in [-0.5, 8): negatives and highlights over 1.0 must survive."""
    rng = np.random.default_rng(seed)
    rgb = rng.random((H, W, 3), dtype=np.float32) * 8.5 - 0.5
    rgb[0, 0] = (1.0, 0.18, 0.0)
    return rgb


def read(path):
    with OpenEXR.File(str(path)) as f:
        return dict(f.header()), f.channels()["RGB"].pixels.copy()


def test_header_attributes_round_trip(tmp_path):
    meta = {"cinescale:plan": '{"preset": "uhd-exr-draft"}', "cinescale:seed": 1234, "colorspace": "Rec.1886"}
    tgt = exr_target(tmp_path, metadata=meta, numbers=(1004, 1005))
    with ExrWriter(tgt) as w:
        w.write(Frame(number=1004, index=3, rgb=image()))
        w.write(Frame(number=1005, index=4, rgb=image(4)))
    paths = w.close()
    assert [os.path.basename(p) for p in paths] == ["sh010.1004.exr", "sh010.1005.exr"]
    hdr, _ = read(paths[0])
    tc = hdr["timeCode"]
    assert (tc.hours, tc.minutes, tc.seconds, tc.frame, tc.dropFrame) == (1, 0, 10, 3, False)
    assert hdr["framesPerSecond"] == Fraction(24000, 1001)
    assert isinstance(hdr["framesPerSecond"], Fraction)
    assert np.allclose(hdr["chromaticities"], CHROMATICITIES[1], atol=1e-6)
    assert hdr["frame"] == 1004 and hdr["sourceFrame"] == 3
    assert hdr["sourceFile"] == "/plates/sh010.mov" and hdr["sourceTimecode"] == "01:00:10:00"
    assert hdr["owner"].startswith("cinescale-post") and hdr["software"].startswith("cinescale-post")
    assert hdr["cinescale:plan"] == '{"preset": "uhd-exr-draft"}'
    assert hdr["cinescale:seed"] == "1234"  # every metadata entry is a string attribute
    assert hdr["colorspace"] == "Rec.1886"
    assert str(hdr["compression"]).endswith("PIZ_COMPRESSION")
    assert read(paths[1])[0]["timeCode"].frame == 4


def test_drop_frame_timecode_and_other_primaries(tmp_path):
    src = movie_source(timecode="00:00:59;29", rate=Fraction(30000, 1001))
    with ExrWriter(exr_target(tmp_path, src, colour=Colour(primaries=9, trc=14, matrix=9))) as w:
        w.write(Frame(number=1002, index=1, rgb=image()))
    hdr, _ = read(tmp_path / "sh010.1002.exr")
    tc = hdr["timeCode"]
    assert (tc.hours, tc.minutes, tc.seconds, tc.frame, tc.dropFrame) == (0, 1, 0, 2, True)
    assert np.allclose(hdr["chromaticities"], CHROMATICITIES[9], atol=1e-6)
    assert hdr["framesPerSecond"] == Fraction(30000, 1001)


def test_no_source_timecode_means_no_timecode_attribute(tmp_path):
    with ExrWriter(exr_target(tmp_path, movie_source(timecode=None), colour=Colour(primaries=2))) as w:
        w.write(Frame(number=1001, index=0, rgb=image()))
    hdr, _ = read(tmp_path / "sh010.1001.exr")
    assert "timeCode" not in hdr and "sourceTimecode" not in hdr
    assert "chromaticities" not in hdr  # unspecified primaries are not guessed


def test_sequence_source_counts_timecode_by_plate_number(tmp_path):
    src = SourceInfo(path="/plates/sh010.####.exr", kind="sequence", format="exr", codec="exr", width=W, height=H,
                     pix_fmt="rgb", bit_depth=16, rate=Fraction(24), time_base=Fraction(1, 24),
                     frame_numbers=(1001, 1002, 1010), timecode="01:00:00:00", missing=tuple(range(1003, 1010)))
    with ExrWriter(exr_target(tmp_path, src)) as w:
        w.write(Frame(number=1010, index=2, rgb=image()))
    hdr, _ = read(tmp_path / "sh010.1010.exr")
    assert hdr["timeCode"].frame == 9 and hdr["sourceFrame"] == 1010


@pytest.mark.parametrize("pixel,dtype", [("half", np.float16), ("float", np.float32)])
def test_pixels_exact_for_lossless(tmp_path, pixel, dtype):
    rgb = image()
    rgb[1, 1] = (70000.0, -70000.0, 0.0)  # past half range: clamped, never inf
    with ExrWriter(exr_target(tmp_path, options={"pixel": pixel, "compression": "zip"})) as w:
        w.write(Frame(number=1001, index=0, rgb=rgb))
    _, px = read(tmp_path / "sh010.1001.exr")
    assert px.dtype == dtype and px.shape == (H, W, 3)
    if pixel == "half":
        want = np.clip(rgb, -65504, 65504).astype(np.float16)
        assert np.isfinite(px).all()
    else:
        want = rgb
    assert np.array_equal(px, want)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_is_readable(tmp_path, compression):
    # A smooth ramp up to 4.0: lossy codecs (B44, DWA) are meant for images, not noise.
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([xx / W * 4.0, yy / H, (xx + yy) / (W + H)], axis=-1)
    with ExrWriter(exr_target(tmp_path, options={"compression": compression})) as w:
        w.write(Frame(number=1001, index=0, rgb=rgb))
    hdr, px = read(tmp_path / "sh010.1001.exr")
    assert px.shape == (H, W, 3)
    assert str(hdr["compression"]).lower().split(".")[-1].startswith(
        "no_" if compression == "none" else f"{compression}_")
    ref = rgb.astype(np.float16).astype(np.float32)
    err = np.abs(px.astype(np.float32) - ref) / np.maximum(np.abs(ref), 1.0)
    lossy = compression in ("b44", "b44a", "dwaa", "dwab")
    assert err.max() < (0.05 if lossy else 1e-7), (compression, err.max())


def test_dwa_level_is_written(tmp_path):
    with ExrWriter(exr_target(tmp_path, options={"compression": "dwaa", "dwa_level": 90})) as w:
        w.write(Frame(number=1001, index=0, rgb=image()))
    hdr, _ = read(tmp_path / "sh010.1001.exr")
    assert hdr["dwaCompressionLevel"] == 90.0


def test_hash_pattern_and_temp_names(tmp_path, monkeypatch):
    tgt = exr_target(tmp_path, pattern="out/sh010_v001.####.exr")
    w = ExrWriter(tgt)
    seen = []
    real = OpenEXR.File.write

    def spy(self, path):
        seen.append((os.path.basename(path), sorted(os.listdir(tmp_path / "out"))))
        return real(self, path)

    monkeypatch.setattr(OpenEXR.File, "write", spy)
    w.write(Frame(number=1001, index=0, rgb=image()))
    assert seen == [(f".sh010_v001.1001.exr.tmp-{os.getpid()}", [])]  # final name absent while writing
    assert w.close() == [str(tmp_path / "out" / "sh010_v001.1001.exr")]
    assert os.listdir(tmp_path / "out") == ["sh010_v001.1001.exr"]


def test_failed_write_leaves_neither_final_nor_temp(tmp_path, monkeypatch):
    w = ExrWriter(exr_target(tmp_path))
    w.write(Frame(number=1001, index=0, rgb=image()))

    def broken(self, path):
        with open(path, "wb") as f:
            f.write(b"v/1\x01" + b"\0" * 100)  # a header-like start, then the "disk" fails
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(OpenEXR.File, "write", broken)
    with pytest.raises(OutputError, match="sh010.1002.exr"):
        w.write(Frame(number=1002, index=1, rgb=image()))
    w.abort()
    assert os.listdir(tmp_path) == ["sh010.1001.exr"]  # the published frame is kept
    assert w.close() == [str(tmp_path / "sh010.1001.exr")]


@pytest.mark.parametrize("options,key", [
    ({"pixel": "int"}, "pixel"),
    ({"compression": "zstd"}, "compression"),
    ({"compression": "jpeg"}, "compression"),
    ({"dwa_level": 0}, "dwa_level"),
    ({"dwa_level": "high"}, "dwa_level"),
    ({"timecode": "soon"}, "timecode"),
    ({"quality": 3}, "quality"),
])
def test_bad_options_raise_plan_error(options, key):
    with pytest.raises(PlanError) as e:
        validate_exr_options("exr", options)
    assert key in str(e.value) and "exr" in str(e.value) and e.value.fix


def test_defaults_and_case():
    assert validate_exr_options("exr", {}) == {"pixel": "half", "compression": "piz", "dwa_level": 45.0,
                                               "timecode": "auto"}
    assert validate_exr_options("exr", {"compression": "DWAA"})["compression"] == "dwaa"


def test_unwritable_folder_raises_output_error(tmp_path):
    (tmp_path / "f").write_text("a file, not a folder")
    with pytest.raises(OutputError) as e:
        ExrWriter(exr_target(tmp_path, pattern="f/sub/sh.%04d.exr"))
    assert e.value.exit_code == 4 and e.value.fix


def test_missing_frame_token_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match="frame token"):
        ExrWriter(exr_target(tmp_path, pattern="sh010.exr"))
