"""OTIO hand-back: real renders with the deterministic test backend, then the
.otio read back with OpenTimelineIO and checked against what the writers
actually stamped into the files (EXR timeCode, QuickTime tmcd), so timeline
and media cannot drift apart unnoticed."""

from fractions import Fraction

import av
import opentimelineio as otio
import pytest
from opentimelineio import opentime, url_utils

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.editorial import main as editorial_main
from cinescale_post.orchestrator.handback import otio_path, write_otio
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip, make_sequence

from ..helpers import write_preset

RATE = Fraction(24000, 1001)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("otio")
    return make_clip(root / "in.mov", frames=10, size=(48, 32), rate=RATE, timecode="01:00:00:00",
                     content="index")


def _render(host, preset, inp, out, assemble=True, **kw):
    p = plan_mod.build(str(preset), host=host, input=str(inp), output=str(out), **kw)
    return p, run(p, host, NullSink(), assemble=assemble)


def _clips_and_gaps(tl):
    (track,) = tl.tracks
    return [(type(i).__name__, i) for i in track]


def _exr_timecode(path):
    import OpenEXR

    with OpenEXR.File(str(path), header_only=True) as f:
        t = f.header()["timeCode"]
    return f"{t.hours:02d}:{t.minutes:02d}:{t.seconds:02d}:{t.frame:02d}"


def test_sequence_with_gap_conforms_to_the_written_timecode(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48)
    out = tmp_path / "comp" / "sh010.####.exr"
    _render(host, preset, clip, out, frames="1001-1003")
    p, summary = _render(host, preset, clip, out, frames="1007-1008")
    path = write_otio(p, summary.outputs)
    assert path == str(tmp_path / "comp" / "sh010.otio")
    tl = otio.adapters.read_from_file(path)
    rate = float(RATE)
    # the earlier run's frames are in the output too: clip, gap, clip
    kinds = _clips_and_gaps(tl)
    assert [k for k, _ in kinds] == ["Clip", "Gap", "Clip"]
    (_, c1), (_, gap), (_, c2) = kinds
    assert gap.duration() == opentime.RationalTime(3, rate)
    tc0 = opentime.from_timecode("01:00:00:00", rate)
    assert tl.global_start_time == tc0
    assert c1.source_range == opentime.TimeRange(tc0, opentime.RationalTime(3, rate))
    assert c2.source_range.start_time == tc0 + opentime.RationalTime(6, rate)
    assert c2.duration() == opentime.RationalTime(2, rate)
    # record position == source offset: frame 1007 sits 6 frames after 1001
    assert tl.tracks[0].range_of_child_at_index(2).start_time == opentime.RationalTime(6, rate)
    for clip_item, numbers in ((c1, range(1001, 1004)), (c2, range(1007, 1009))):
        ref = clip_item.media_reference
        assert isinstance(ref, otio.schema.ImageSequenceReference)
        assert ref.rate == rate and ref.frame_zero_padding == 4
        for n in numbers:
            t = clip_item.source_range.start_time + opentime.RationalTime(n - numbers[0], rate)
            assert ref.frame_for_time(t) == n
            f = url_utils.filepath_from_url(ref.target_url_for_image_number(ref.frame_for_time(t) - ref.start_frame))
            assert f == str(out.parent / f"sh010.{n}.exr")
            # the EXR's own timeCode is the timeline's time for that frame
            assert _exr_timecode(f) == opentime.to_timecode(t, rate)


def test_assembled_movie_reference_matches_its_tmcd(tmp_path, host, clip):
    preset = write_preset(tmp_path / "m.toml", backend="test-noise", codec="prores_hq", width=64, height=48,
                          chunk=4, audio=False)
    out = tmp_path / "m" / "master.mov"
    p, summary = _render(host, preset, clip, out)
    assert summary.outputs == [str(out)]
    path = write_otio(p, summary.outputs)
    assert path == str(out) + ".otio"
    tl = otio.adapters.read_from_file(path)
    ((kind, c),) = _clips_and_gaps(tl)
    ref = c.media_reference
    assert isinstance(ref, otio.schema.ExternalReference)
    assert url_utils.filepath_from_url(ref.target_url) == str(out)
    with av.open(str(out)) as cont:
        v = cont.streams.video[0]
        tc = v.metadata.get("timecode") or cont.metadata.get("timecode")
        frames = sum(1 for _ in cont.demux(v) if _.size)
    rate = float(RATE)
    assert ref.available_range == opentime.TimeRange(opentime.from_timecode(tc, rate),
                                                     opentime.RationalTime(frames, rate))
    assert c.source_range == ref.available_range
    assert tl.metadata["cinescale"]["plan_digest"] == p.digest()


def test_unassembled_chunks_then_farm_final_step(tmp_path, host, clip, capsys):
    preset = write_preset(tmp_path / "m.toml", backend="test-noise", codec="prores_hq", width=64, height=48,
                          chunk=4, audio=False)
    out = tmp_path / "farm" / "master.mov"
    p, summary = _render(host, preset, clip, out, frames="1001-1008", assemble=False)
    # a partial movie render leaves chunk movies; the timeline points at them
    tl = otio.adapters.read_from_file(write_otio(p, summary.outputs))
    refs = [url_utils.filepath_from_url(c.media_reference.target_url) for _, c in _clips_and_gaps(tl)]
    assert [r.rsplit("/", 1)[1] for r in refs] == ["master.1001-1004.mov", "master.1005-1008.mov"]
    # the final step refuses while frames are missing, with exit 4 and the fix
    assert editorial_main(["--assemble", "--frames", "1001-1010", str(out)]) == 4
    assert "1009-1010" in capsys.readouterr().err
    _render(host, preset, clip, out, frames="1009-1010", assemble=False)
    assert editorial_main(["--assemble", "--frames", "1001-1010", str(out)]) == 0
    assert out.is_file()
    tl = otio.adapters.read_from_file(str(otio_path(str(out))))
    ((_, c),) = _clips_and_gaps(tl)
    assert url_utils.filepath_from_url(c.media_reference.target_url) == str(out)
    assert c.duration() == opentime.RationalTime(10, float(RATE))


def test_sequence_source_without_timecode_uses_frame_numbers(tmp_path, host):
    make_sequence(tmp_path / "in" / "plate.####.exr", range(993, 999), size=(32, 24))
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48)
    out = tmp_path / "up" / "plate_up.%04d.exr"
    p, summary = _render(host, preset, tmp_path / "in" / "plate.####.exr", out)
    tl = otio.adapters.read_from_file(write_otio(p, summary.outputs))
    ((_, c),) = _clips_and_gaps(tl)
    assert tl.global_start_time.value == 993
    assert c.source_range.start_time.value == 993 and c.duration().value == 6
    ref = c.media_reference
    assert ref.start_frame == 993 and ref.name_prefix == "plate_up." and ref.name_suffix == ".exr"


def test_final_step_without_a_render_exits_3(tmp_path, capsys):
    assert editorial_main([str(tmp_path / "nothing.####.exr")]) == 3
    assert "fix:" in capsys.readouterr().err


def test_source_sequence_with_a_hole_keeps_timecode_per_plate_number(tmp_path, host):
    # plates 1004-1005 are missing in the source: later frames keep their own
    # timecode (offset by plate number, as the EXR writer stamps it)
    make_sequence(tmp_path / "in" / "bg.####.exr", range(1001, 1009), skip=(1004, 1005), size=(32, 24),
                  rate=Fraction(25), timecode="10:00:00:00")
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48)
    out = tmp_path / "up" / "bg_up.####.exr"
    p, summary = _render(host, preset, tmp_path / "in" / "bg.####.exr", out, frames="1001-1003,1006-1008")
    tl = otio.adapters.read_from_file(write_otio(p, summary.outputs))
    kinds = _clips_and_gaps(tl)
    assert [k for k, _ in kinds] == ["Clip", "Gap", "Clip"]
    c2 = kinds[2][1]
    assert opentime.to_timecode(c2.source_range.start_time, 25) == "10:00:00:05"
    assert _exr_timecode(out.parent / "bg_up.1006.exr") == "10:00:00:05"
