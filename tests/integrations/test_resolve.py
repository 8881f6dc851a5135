"""The Resolve Workspace script against a fake Resolve API (fake_resolve.py)
that follows the documented objects and writes a real intermediate, with the
real cinescale CLI upscaling it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import av
import pytest

from ..helpers import TEST_BACKENDS_DIST, cli_env, fake_distribution, write_preset
from . import fake_resolve

SCRIPT = Path(__file__).resolve().parents[2] / "integrations" / "resolve" / "Cinescale Upscale.py"


@pytest.fixture
def script(monkeypatch, tmp_path):
    site = fake_distribution(tmp_path / "site", "cinescale-testbackends", TEST_BACKENDS_DIST)
    for k, v in cli_env(site, CINESCALE_LOAD_PLUGINS="testbackends").items():
        if k in ("PYTHONPATH", "CINESCALE_LOAD_PLUGINS"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("CINESCALE_CLI", f"{sys.executable} -m cinescale_post")
    spec = importlib.util.spec_from_file_location("cinescale_resolve_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # importing runs nothing: main() only under __main__
    return mod


@pytest.fixture
def preset(tmp_path):
    return write_preset(tmp_path / "p.toml", backend="test-noise", codec="prores_hq", width=96, height=64, chunk=0,
                        audio=False)


def test_marked_range_round_trip_lands_above_with_source_timecode(script, preset, tmp_path):
    resolve = fake_resolve.Resolve(marks=(10, 21))
    tl = resolve.timeline
    tl.tracks.append([fake_resolve.TimelineItem("title", 86415, 86419)])  # V2 is busy inside the range
    log = []
    res = script.upscale_marked_range(resolve, preset=str(preset), folder=str(tmp_path / "work"), log=log.append,
                                      poll_s=0.01)
    calls = resolve.rec.calls
    (settings,) = [c[1] for c in calls if c[0] == "SetRenderSettings"]
    # the marks (offsets) became absolute record frames; the intermediate is video only
    assert settings["MarkIn"] == 86410 and settings["MarkOut"] == 86421 and settings["SelectAllFrames"] is False
    assert settings["ExportAudio"] is False
    assert ("SetCurrentRenderFormatAndCodec", "mov", "ProRes4444XQ") in calls  # best offered intra codec
    assert ("SetCurrentRenderMode", 1) in calls
    # the project's render setup is restored and the temporary job removed
    assert resolve.project.format_codec == {"format": "mp4", "codec": "H264"} and resolve.project.mode == 0
    assert ("DeleteRenderJob", "job-1") in calls and resolve.project.jobs == {}
    # the upscaled movie: 12 frames at the preset size, timecode of the In point kept
    with av.open(res["output"]) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (96, 64)
        assert sum(1 for p in c.demux(v) if p.size) == 12
    assert res["start_tc"] == "01:00:00:10"
    # imported into the cinescale bin, placed video-only on the first free track above (V3, added)
    (imported,) = [c for c in calls if c[0] == "ImportMedia"]
    assert imported[1] == [res["output"]] and imported[2] == "cinescale"
    assert ("AddTrack", "video") in calls
    (append,) = [c[1] for c in calls if c[0] == "AppendToTimeline"]
    assert append[0]["trackIndex"] == 3 and append[0]["recordFrame"] == 86410 and append[0]["mediaType"] == 1
    assert (append[0]["startFrame"], append[0]["endFrame"]) == (0, 11)
    placed = res["timeline_item"]
    assert (placed.GetStart(), placed.GetEnd()) == (86410, 86422) and res["track"] == 3
    assert any("cinescale" in line and "%" in line for line in log)


def test_no_marks_is_explained(script, preset, tmp_path):
    resolve = fake_resolve.Resolve(marks=None)
    with pytest.raises(script.CinescaleResolveError, match="mark In and Out"):
        script.upscale_marked_range(resolve, preset=str(preset), folder=str(tmp_path / "w"), log=lambda s: None)
    assert "AddRenderJob" not in resolve.rec.names()


def test_cli_error_reaches_the_console_and_nothing_is_placed(script, tmp_path):
    resolve = fake_resolve.Resolve(marks=(0, 3))
    with pytest.raises(script.CinescaleResolveError, match="exited with code 2.*no-such-preset"):
        script.upscale_marked_range(resolve, preset="no-such-preset", folder=str(tmp_path / "w"),
                                    log=lambda s: None, poll_s=0.01)
    assert "AppendToTimeline" not in resolve.rec.names()
    assert resolve.project.mode == 0  # restored even though the run failed later


def test_only_offered_codecs_are_used(script, tmp_path, monkeypatch):
    resolve = fake_resolve.Resolve()
    monkeypatch.setattr(fake_resolve.Project, "CODECS", {"mov": {"H.264": "H264"}})
    with pytest.raises(script.CinescaleResolveError, match="intra-frame QuickTime codec"):
        script.upscale_marked_range(resolve, folder=str(tmp_path / "w"), log=lambda s: None)


@pytest.mark.parametrize("settings, env, args, said", [
    ({}, None, [], "assuming display-referred Rec.709"),
    ({"colorScienceMode": "davinciYRGBColorManagedv2", "colorSpaceOutput": "Rec.709 Gamma 2.4"}, None, [],
     "display-referred"),
    ({"colorScienceMode": "davinciYRGBColorManagedv2", "colorSpaceOutput": "ARRI LogC4"}, None,
     ["--set", "colour.mode=ocio", "--set", "colour.input=ARRI LogC4"], "OCIO mode"),
    ({"colorScienceMode": "acescct", "acesODT": "No ODT"}, None,
     ["--set", "colour.mode=ocio", "--set", "colour.input=ACEScct"], "ACEScct"),
    ({"colorScienceMode": "acescct", "acesODT": "Rec.709"}, None, [], "output transform"),
    ({}, "S-Log3 S-Gamut3.Cine", ["--set", "colour.mode=ocio", "--set", "colour.input=S-Log3 S-Gamut3.Cine"],
     "CINESCALE_RESOLVE_COLOUR"),
])
def test_intermediate_colour_is_said_and_passed(script, monkeypatch, settings, env, args, said):
    if env:
        monkeypatch.setenv("CINESCALE_RESOLVE_COLOUR", env)
    else:
        monkeypatch.delenv("CINESCALE_RESOLVE_COLOUR", raising=False)
    project = fake_resolve.Resolve().project
    project.project_settings = settings
    got, sentence = script.intermediate_colour(project)
    assert got == args and said in sentence


def test_log_output_space_reaches_the_cli(script, preset, tmp_path, monkeypatch):
    monkeypatch.delenv("CINESCALE_RESOLVE_COLOUR", raising=False)
    resolve = fake_resolve.Resolve(marks=(10, 13))
    resolve.project.project_settings = {"colorScienceMode": "acescct", "acesODT": "No ODT"}
    log = []
    res = script.upscale_marked_range(resolve, preset=str(preset), folder=str(tmp_path / "work"), log=log.append,
                                      poll_s=0.01)
    assert res["colour"] == ["--set", "colour.mode=ocio", "--set", "colour.input=ACEScct"]
    assert any(line.startswith("colour: ACES with no output transform") for line in log)
    manifests = list((tmp_path / "work").rglob("*.manifest.json"))
    assert manifests and json.loads(manifests[0].read_text())["plan"]["colour"]["input"] == "ACEScct"


class _FakeUI:
    """Just what the script's dialog asks of Fusion's UIManager and its dispatcher."""

    def __init__(self):
        self.shown = []

    def VGroup(self, children):  # noqa: N802 - Resolve's names
        return children

    def Label(self, props):  # noqa: N802
        return dict(props, kind="label")

    def Button(self, props):  # noqa: N802
        return dict(props, kind="button")


class _Win:
    def __init__(self, ui, props, children):
        from types import SimpleNamespace

        self.ui, self.props, self.children = ui, props, children
        self.On = SimpleNamespace(OK=SimpleNamespace(), CinescaleNote=SimpleNamespace())

    def Show(self):  # noqa: N802
        self.ui.shown.append([c["Text"] for group in self.children for c in group])

    def Hide(self):  # noqa: N802
        pass


class _Dispatcher:
    def __init__(self, ui):
        self.ui, self.win = ui, None

    def AddWindow(self, props, children):  # noqa: N802
        self.win = _Win(self.ui, props, children)
        return self.win

    def RunLoop(self):  # noqa: N802 - the user clicks OK
        self.win.On.OK.Clicked(None)

    def ExitLoop(self):  # noqa: N802
        pass


def test_an_assumed_colour_space_is_said_in_a_dialog(script, preset, tmp_path, monkeypatch):
    """Issue 15: where Resolve does not say what it renders, the script says in a
    dialog (not only in the Console) what it assumes; a known space asks nothing."""
    monkeypatch.delenv("CINESCALE_RESOLVE_COLOUR", raising=False)
    ui = _FakeUI()
    monkeypatch.setattr(script, "bmd", type("bmd", (), {"UIDispatcher": staticmethod(_Dispatcher)}), raising=False)
    for settings, dialogs in (({}, 1), ({"colorScienceMode": "acescct", "acesODT": "No ODT"}, 0)):
        ui.shown.clear()
        resolve = fake_resolve.Resolve(marks=(10, 13))
        resolve.Fusion = lambda: type("Fusion", (), {"UIManager": ui})()
        resolve.project.project_settings = settings
        script.upscale_marked_range(resolve, preset=str(preset), folder=str(tmp_path / f"w{dialogs}"),
                                    log=lambda line: None, poll_s=0.01)
        assert len(ui.shown) == dialogs
    # without a UI (external scripting, a render node) the Console line is all, and nothing fails
    assert script.tell(fake_resolve.Resolve(), "x") is False


def test_dialog_text_names_the_assumption_and_the_setting(script, monkeypatch):
    monkeypatch.delenv("CINESCALE_RESOLVE_COLOUR", raising=False)
    ui = _FakeUI()
    monkeypatch.setattr(script, "bmd", type("bmd", (), {"UIDispatcher": staticmethod(_Dispatcher)}), raising=False)
    resolve = fake_resolve.Resolve()
    resolve.Fusion = lambda: type("Fusion", (), {"UIManager": ui})()
    _, said = script.intermediate_colour(resolve.project)
    assert script.tell(resolve, said) is True
    text = ui.shown[0][0]
    assert "Rec.709" in text and "CINESCALE_RESOLVE_COLOUR" in text and ui.shown[0][1] == "OK"


def test_upscale_the_current_timeline_conforms_and_imports_it(script, preset, tmp_path):
    """"Upscale the current timeline": the fake exports the timeline as OTIO
    (two clips of a real source with timecode), the real CLI conforms it, and
    the relinked timeline comes back into the media pool beside the original."""
    from fractions import Fraction

    import opentimelineio as otio

    from cinescale_post.testing import make_clip

    src = make_clip(tmp_path / "A001.mov", frames=48, size=(64, 48), rate=Fraction(24), codec="prores_ks",
                    profile="hq", timecode="01:00:00:00")
    resolve = fake_resolve.Resolve(marks=None)
    tl = resolve.timeline
    mpi = fake_resolve.MediaPoolItem(str(src), {"Start TC": "01:00:00:00", "Frames": "48"})
    tl.tracks = [[fake_resolve.TimelineItem("A001", 86400, 86410, mpi, left_offset=4),
                  fake_resolve.TimelineItem("A001", 86412, 86420, mpi, left_offset=30)]]
    log = []
    res = script.upscale_timeline(resolve, preset=str(preset), folder=str(tmp_path / "work"), log=log.append)
    calls = resolve.rec.calls
    assert ("Export", res["cut"], fake_resolve.Resolve.EXPORT_OTIO) in calls
    (imported,) = [c for c in calls if c[0] == "ImportTimelineFromFile"]
    assert imported[1] == res["relinked"] and imported[2] == {"timelineName": "Reel 1 (cinescale)"}
    new = res["timeline"]
    assert new.GetName() == "Reel 1 (cinescale)" and new in resolve.project.timelines
    # the same record ranges, each clip now on its render
    ranges = [(i.GetStart(), i.GetEnd()) for i in new.tracks[0]]
    assert ranges == [(86400, 86410), (86412, 86420)]
    relinked = otio.adapters.read_from_file(res["relinked"])
    for clip in relinked.find_clips():
        path = clip.media_reference.target_url.removeprefix("file://")
        with av.open(path) as c:
            assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == \
                clip.media_reference.available_range.duration.to_frames()
    assert any("cinescale" in line for line in log)
