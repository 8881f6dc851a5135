"""Issue 24: `cinescale conform` renders what an editor's cut uses and relinks
the cut. Timelines are built with OpenTimelineIO in the tests and written by
its adapters (OTIO, CMX 3600 EDL, FCP 7 XML); renders are judged with the
ffmpeg binary; relinked cuts are read back by the same adapters."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import numpy as np
import opentimelineio as otio
import pytest

from cinescale_post.testing import make_clip
from tests.helpers import run_cli
from tests.media import ffjudge
from tests.media import realworld as rw

RATE = 24
SIZE = ["--set", "output.width=128", "--set", "output.height=96"]


def rt(frames):
    return otio.opentime.RationalTime(frames, RATE)


def tr(start, dur):
    return otio.opentime.TimeRange(rt(start), rt(dur))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Two 48-frame sources with timecode, every frame burned with its index."""
    root = tmp_path_factory.mktemp("conform-media")
    a = make_clip(root / "A001.mov", frames=48, size=(64, 48), rate=Fraction(RATE), codec="prores_ks",
                  profile="hq", content="index", timecode="01:00:00:00")
    b = make_clip(root / "B002.mov", frames=48, size=(64, 48), rate=Fraction(RATE), codec="prores_ks",
                  profile="hq", content="index", timecode="02:00:00:00")
    return root, a, b


TC_A, TC_B = 86400, 172800  # 01:00:00:00 and 02:00:00:00 at 24 fps, in frames


def ext(path, start, dur):
    return otio.schema.ExternalReference(target_url=str(path), available_range=tr(start, dur))


def cut_timeline(a, b):
    """Overlapping uses of A, a 2x retime and a freeze of B, a dissolve, a gap."""
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    c1 = otio.schema.Clip("A_one", media_reference=ext(a, TC_A, 48), source_range=tr(TC_A + 4, 10))
    c2 = otio.schema.Clip("A_two", media_reference=ext(a, TC_A, 48), source_range=tr(TC_A + 10, 8))
    fast = otio.schema.Clip("B_fast", media_reference=ext(b, TC_B, 48), source_range=tr(TC_B + 30, 5))
    fast.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    freeze = otio.schema.Clip("B_hold", media_reference=ext(b, TC_B, 48), source_range=tr(TC_B + 5, 6))
    freeze.effects.append(otio.schema.FreezeFrame())
    track.extend([c1, otio.schema.Gap(source_range=tr(0, 3)), c2,
                  otio.schema.Transition(in_offset=rt(2), out_offset=rt(2)), fast, freeze])
    tl = otio.schema.Timeline("cut", global_start_time=rt(TC_A))
    tl.tracks.append(track)
    return tl


def record_ranges(tl):
    return [(c.name, c.range_in_parent()) for c in tl.find_clips()]


def test_conform_an_otio_cut(env, media, tmp_path):
    root, a, b = media
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(cut_timeline(a, b), str(cut))
    out = tmp_path / "out"
    args = ["conform", str(cut), "-o", str(out), *SIZE, "--handles", "2", "--progress", "none"]
    dry = run_cli([*args, "--dry-run"], env=env)
    assert dry.returncode == 0, dry.stderr
    shots = {s["shot"]: s for s in json.loads(dry.stdout)["shots"]}
    # A: one_ uses 4..13, two_ 10..17 (+2 for the dissolve after it) -> merged 2..21 with handles
    a_shot = next(s for s in shots.values() if s["source"].endswith("A001.mov"))
    assert a_shot["frames"] == "1003-1022" and a_shot["clips"] == ["A_one", "A_two"]
    # B: the dissolve's 2 frames before B_fast, 5 frames at 2x = 10 source frames, handles 2
    b_fast = next(s for s in shots.values() if s["clips"] == ["B_fast"])
    assert b_fast["frames"] == f"{1001 + 30 - 4 - 2}-{1001 + 30 + 10 - 1 + 2}"
    hold = next(s for s in shots.values() if s["clips"] == ["B_hold"])
    assert hold["frames"] == f"{1001 + 5 - 2}-{1001 + 5 + 6 - 1 + 2}"  # a freeze still spans its 6 frames
    assert not (out / "cut.conformed.otio").exists()  # a dry run renders nothing

    r = run_cli(args, env=env)
    assert r.returncode == 0, r.stderr
    relinked = otio.adapters.read_from_file(str(out / "cut.conformed.otio"))
    assert record_ranges(relinked) == record_ranges(otio.adapters.read_from_file(str(cut)))
    for clip in relinked.find_clips():
        ref = clip.media_reference
        path = ref.target_url.removeprefix("file://")
        n = ffjudge.frame_count(path)
        assert n == ref.available_range.duration.to_frames()
        avail = ref.available_range
        sr = clip.source_range
        assert avail.start_time <= sr.start_time and sr.end_time_exclusive() <= avail.end_time_exclusive()
        # the render's own timecode is its first source frame's
        assert ffjudge.stream_line(path)
        tc = _timecode(path)
        assert otio.opentime.from_timecode(tc, RATE).to_frames() == avail.start_time.to_frames()
        # pixels at a named source frame: the render shows the source frame burned in it
        k = sr.start_time.to_frames() - avail.start_time.to_frames()
        src_index = sr.start_time.to_frames() - (TC_A if "A001" in clip.name or clip.name.startswith("A")
                                                 else TC_B)
        assert _burned_index(path, k) == src_index
    again = run_cli(args, env=env)  # a second run renders nothing new
    assert again.returncode == 0, again.stderr


def _timecode(path) -> str:
    import av

    with av.open(str(path)) as c:
        for s in [c.streams.video[0], *c.streams.data]:
            if s.metadata.get("timecode"):
                return s.metadata["timecode"]
    raise AssertionError(f"{path} has no timecode")


def _burned_index(path, k: int) -> int:
    """The frame index burned into frame ``k`` of a render (the grid of
    ``testing.pixels.index_rgb``, read back after ffmpeg scales it down)."""
    from cinescale_post.testing import read_index

    data = subprocess.run([rw.ffmpeg(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{k}),scale=64:48",
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"],
                          capture_output=True, check=True).stdout
    rgb = np.frombuffer(data, "<u2").reshape(48, 64, 3).astype(np.float32) / 65535
    return read_index(rgb)


def test_missing_media_are_listed_in_one_error_before_anything_renders(env, media, tmp_path):
    root, a, b = media
    tl = cut_timeline(tmp_path / "nowhere" / "A001.mov", tmp_path / "gone.mov")
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(tl, str(cut))
    r = run_cli(["conform", str(cut), "-o", str(tmp_path / "o"), *SIZE, "--progress", "none"], env=env)
    assert r.returncode == 3, r.stderr
    assert "4 clip(s) of the cut have no media" in r.stderr and "gone.mov" in r.stderr and "--search-path" in r.stderr
    assert not (tmp_path / "o").exists()
    # the same cut with --search-path finds A001 by name; B's file still does not exist
    r = run_cli(["conform", str(cut), "-o", str(tmp_path / "o"), "--search-path", str(root), "--dry-run"], env=env)
    assert r.returncode == 3 and "2 clip(s)" in r.stderr, r.stderr


def test_an_edl_an_fcp7_xml_an_fcpxml_and_an_aaf_round_trip(env, media, tmp_path):
    root, a, b = media
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for name, src, start in (("A001", a, TC_A + 6), ("B002", b, TC_B + 20)):
        track.append(otio.schema.Clip(name, media_reference=ext(src, TC_A if name == "A001" else TC_B, 48),
                                      source_range=tr(start, 8)))
    tl = otio.schema.Timeline("edl", global_start_time=rt(TC_A))
    tl.tracks.append(track)
    for suffix in (".edl", ".xml", ".fcpxml", ".aaf"):
        cut = tmp_path / f"cut{suffix}"
        # an editor's AAF carries mob ids; one written from scratch asks the adapter for empty ones
        otio.adapters.write_to_file(tl, str(cut), **({"use_empty_mob_ids": True} if suffix == ".aaf" else {}))
        out = tmp_path / f"out{suffix[1:]}"
        extra = ["--search-path", str(root), "--rate", "24"] if suffix == ".edl" else []
        r = run_cli(["conform", str(cut), "-o", str(out), *SIZE, *extra, "--progress", "none"], env=env)
        assert r.returncode == 0, r.stderr
        back = otio.adapters.read_from_file(str(out / f"cut.conformed{suffix}"),
                                            **({"rate": 24} if suffix == ".edl" else {}))
        src = otio.adapters.read_from_file(str(cut), **({"rate": 24} if suffix == ".edl" else {}))
        assert [r for _, r in record_ranges(back)] == [r for _, r in record_ranges(src)]
        assert [c.source_range for c in back.find_clips()] == [c.source_range for c in src.find_clips()]
        assert (out / "cut.conformed.otio").is_file()
        if suffix != ".edl":  # an EDL names media by reel, not by path
            urls = [c.media_reference.target_url for c in back.find_clips()]
            assert all(out.name in u and u.endswith(".mov") for u in urls), urls


def test_an_unknown_or_uninstalled_format_is_a_usage_error(env, tmp_path):
    cut = tmp_path / "cut.mxf"
    cut.write_text("x")
    r = run_cli(["conform", str(cut), "-o", str(tmp_path / "o")], env=env)
    assert r.returncode == 2 and ".otio" in r.stderr, r.stderr


def test_per_shot_settings_split_and_reach_their_render(host, media, tmp_path):
    """A clip's metadata and a 'cinescale' marker give it its own seed and
    overrides: two uses of one range with other settings are two shots."""
    from cinescale_post.editorial.conform import conform

    root, a, b = media
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    plain = otio.schema.Clip("plain", media_reference=ext(a, TC_A, 48), source_range=tr(TC_A + 2, 6))
    seeded = otio.schema.Clip("seeded", media_reference=ext(a, TC_A, 48), source_range=tr(TC_A + 4, 6),
                              metadata={"cinescale": {"seed": 9, "set": ["output.width=64"]}})
    marked = otio.schema.Clip("marked", media_reference=ext(b, TC_B, 48), source_range=tr(TC_B + 1, 4))
    marked.markers.append(otio.schema.Marker(name="cinescale", marked_range=tr(TC_B + 1, 1),
                                             comment="seed=4\noutput.height=48\nprompt=a wet street"))
    track.extend([plain, seeded, marked])
    tl = otio.schema.Timeline("s")
    tl.tracks.append(track)
    cut = tmp_path / "s.otio"
    otio.adapters.write_to_file(tl, str(cut))
    events = []

    class Sink(__import__("cinescale_post.orchestrator.progress", fromlist=["Sink"]).Sink):
        def show(self, event, fields):
            events.append((event, dict(fields)))

    preset = str(__import__("tests.helpers", fromlist=["write_preset"]).write_preset(
        tmp_path / "p.toml", backend="test-noise", codec="exr", width=128, height=96, chunk=0))
    report = conform(cut, tmp_path / "out", preset=preset, host=host, sink=Sink())
    shots = {tuple(s["clips"]): s for s in report["shots"]}
    assert set(shots) == {("plain",), ("seeded",), ("marked",)}  # same range, other settings: not merged
    assert shots[("seeded",)]["settings"] == {"seed": 9, "set": ["output.width=64"]}
    assert shots[("marked",)]["settings"]["prompt"] == "a wet street"
    manifest = json.loads((tmp_path / "out" / "s.conform.json").read_text())
    assert [s["shot"] for s in manifest["shots"]] == [s["shot"] for s in report["shots"]]
    import OpenEXR

    def size(shot):
        first = sorted((tmp_path / "out" / shot["shot"]).glob("*.exr"))[0]
        with OpenEXR.File(str(first)) as f:
            return f.channels()["RGB"].pixels.shape[:2]

    assert size(shots[("seeded",)]) == (96, 64) and size(shots[("marked",)]) == (48, 128)
    # one progress over every shot; each frame event names its shot
    starts = [f for e, f in events if e == "start"]
    assert len(starts) == 1 and starts[0]["total"] == 6 + 6 + 4
    frames = [f for e, f in events if e == "frame"]
    assert len(frames) == 16 and {f["shot"] for f in frames} == {s["shot"] for s in report["shots"]}
    assert frames[-1]["done"] == 16 and [e for e, _ in events].count("finished") == 1


def test_edit_points_of_a_flattened_reel_are_cuts_no_window_crosses(host, tmp_path):
    """A flattened export: two shots in one file, cut at frame 10 of the reel.
    The timeline's edit point there becomes a window cut: the temporal test
    backend shows no window mean mixing the two shots."""
    import OpenEXR

    from cinescale_post.editorial.conform import conform
    from tests.helpers import write_preset

    def content(i, size):
        w, h = size
        return np.full((h, w, 3), 0.1 if i < 10 else 0.9, np.float32)

    reel = make_clip(tmp_path / "flat.mov", frames=20, size=(64, 48), rate=Fraction(RATE), codec="prores_ks",
                     profile="hq", content=content, timecode="01:00:00:00")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.extend([otio.schema.Clip("sh010", media_reference=ext(reel, TC_A, 20), source_range=tr(TC_A, 10)),
                  otio.schema.Clip("sh020", media_reference=ext(reel, TC_A, 20), source_range=tr(TC_A + 10, 10))])
    tl = otio.schema.Timeline("flat")
    tl.tracks.append(track)
    cut = tmp_path / "flat.otio"
    otio.adapters.write_to_file(tl, str(cut))
    preset = write_preset(tmp_path / "t.toml", backend="test-temporal", codec="exr", width=32, height=24,
                          window=(5, 2), chunk=0)
    report = conform(cut, tmp_path / "out", preset=str(preset), host=host)
    (shot,) = report["shots"]
    assert shot["clips"] == ["sh010", "sh020"] and shot["cuts"] == [1011]
    # the shot's farm render job carries the cut: a plan built from its arguments has it
    import cinescale_post.pipeline.plan as plan_mod

    job, args = shot["render"], shot["render"]["args"]
    sets = tuple(args[i + 1] for i, a in enumerate(args) if a == "--set")
    farm_plan = plan_mod.build(args[args.index("--preset") + 1], host=host, input=job["input"],
                               output=str(tmp_path / "farm" / "f.####.exr"), overrides=sets, frames=job["frames"])
    assert farm_plan.window.cuts == (1011,)
    for p in sorted((tmp_path / "out" / shot["shot"]).glob("*.exr")):
        n = int(p.name.split(".")[-2])
        with OpenEXR.File(str(p)) as f:
            mean = float(f.channels()["RGB"].pixels.astype(np.float32).mean())
        assert abs(mean - (0.1 if n < 1011 else 0.9) * 1.1) < 0.01, (n, mean)


def test_each_shot_is_a_farm_render_job_and_conform_then_only_relinks(env, media, tmp_path):
    """The dry run gives every shot as one `cinescale render` (what the farm
    recipes submit, their tasks adding --start/--end); after the farm ran them,
    the same conform renders nothing and writes the relinked cut."""
    root, a, b = media
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(cut_timeline(a, b), str(cut))
    args = ["conform", str(cut), "-o", str(tmp_path / "out"), *SIZE, "--handles", "1"]
    dry = run_cli([*args, "--dry-run"], env=env)
    assert dry.returncode == 0, dry.stderr
    for shot in json.loads(dry.stdout)["shots"]:
        job = shot["render"]
        first, last = map(int, job["frames"].split("-"))
        mid = (first + last) // 2
        for lo, hi in ((first, mid), (mid + 1, last)):  # two farm tasks per shot, as the recipes run them
            r = run_cli(["render", job["input"], "-o", job["output"], *job["args"], "--start", str(lo), "--end",
                         str(hi), "--job-frames", job["frames"], "--no-assemble", "--progress", "none"], env=env)
            assert r.returncode == 0, r.stderr
    r = run_cli([*args, "--progress", "json"], env=env)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in events if e["event"] == "frame"]  # nothing left to render
    assert events[-1]["event"] == "finished" and events[-1]["done"] == events[-1]["total"] > 0
    relinked = otio.adapters.read_from_file(str(tmp_path / "out" / "cut.conformed.otio"))
    for clip in relinked.find_clips():
        path = clip.media_reference.target_url.removeprefix("file://")
        assert ffjudge.frame_count(path) == clip.media_reference.available_range.duration.to_frames()


def test_clips_inside_a_nested_sequence_are_rendered_and_relinked(host, media, tmp_path):
    """A nested sequence (an OTIO Stack in the track, as Premiere's nests and
    FCP's compound clips import) with a video and an audio track: its video
    clip is rendered and relinked, its audio passes by untouched."""
    from cinescale_post.editorial.conform import conform
    from tests.helpers import write_preset

    root, a, b = media
    nest = otio.schema.Stack(name="nest", source_range=tr(0, 6))
    inner = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    inner.append(otio.schema.Clip("B_nested", media_reference=ext(b, TC_B, 48), source_range=tr(TC_B + 12, 6)))
    sound = otio.schema.Track(kind=otio.schema.TrackKind.Audio)
    sound.append(otio.schema.Clip("B_sound", media_reference=ext(b, TC_B, 48), source_range=tr(TC_B + 12, 6)))
    nest.extend([inner, sound])
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.extend([otio.schema.Clip("A_top", media_reference=ext(a, TC_A, 48), source_range=tr(TC_A + 2, 4)), nest])
    tl = otio.schema.Timeline("nested")
    tl.tracks.append(track)
    cut = tmp_path / "nested.otio"
    otio.adapters.write_to_file(tl, str(cut))
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=64, height=48, chunk=0)
    report = conform(cut, tmp_path / "out", preset=str(preset), host=host)
    assert sorted(tuple(s["clips"]) for s in report["shots"]) == [("A_top",), ("B_nested",)]
    back = otio.adapters.read_from_file(str(tmp_path / "out" / "nested.conformed.otio"))
    by_name = {c.name: c for c in back.find_clips()}
    nested = by_name["B_nested"].media_reference
    assert isinstance(nested, otio.schema.ImageSequenceReference) and "B_nested" in nested.target_url_base
    assert nested.available_range == tr(TC_B + 12, 6)
    assert by_name["B_sound"].media_reference.target_url == str(b)  # audio is not relinked
    assert by_name["B_nested"].range_in_parent() == tr(0, 6)
    assert len(list((tmp_path / "out").glob("B_nested*/*.exr"))) == 6
