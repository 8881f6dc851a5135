"""The Nuke integration against a fake ``nuke`` module (tests/integrations/
fake_nuke.py) that records calls and enforces Nuke's threading rules, with the
real cinescale CLI rendering for real in the worker thread."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest

from cinescale_post.testing import make_sequence

from ..helpers import TEST_BACKENDS_DIST, cli_env, fake_distribution, tree_bytes, write_preset
from . import fake_nuke

NUKE_DIR = Path(__file__).resolve().parents[2] / "integrations" / "nuke"


@pytest.fixture
def nk(monkeypatch, tmp_path):
    """cinescale_nuke imported against the fake nuke, the CLI found through
    CINESCALE_CLI, the test backends through a real entry point."""
    fake_nuke.reset()
    monkeypatch.setitem(sys.modules, "nuke", fake_nuke)
    monkeypatch.syspath_prepend(str(NUKE_DIR))
    site = fake_distribution(tmp_path / "site", "cinescale-testbackends", TEST_BACKENDS_DIST)
    for k, v in cli_env(site, CINESCALE_LOAD_PLUGINS="testbackends").items():
        if k in ("PYTHONPATH", "CINESCALE_LOAD_PLUGINS"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("CINESCALE_CLI", f"{sys.executable} -m cinescale_post")
    monkeypatch.setenv("CINESCALE_NUKE_DIR", str(tmp_path / "work"))
    sys.modules.pop("cinescale_nuke", None)
    mod = importlib.import_module("cinescale_nuke")
    yield mod
    sys.modules.pop("cinescale_nuke", None)


def _finish(job, timeout=120):
    assert job.wait(timeout) in ("finished", "cancelled", "failed"), "the worker thread did not end"
    return fake_nuke.run_main_thread_queue()


def test_grade_node_is_prerendered_upscaled_and_read_back(nk, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=96, height=64)
    grade = fake_nuke.Node("Grade", "Grade1", first=1001, last=1006)
    grade._xy = (100, 200)
    fake_nuke.state.selected = grade
    job = nk.render_selected(preset=str(preset))
    assert job is not None and threading.current_thread() is threading.main_thread()
    created = _finish(job)
    assert job.status == "finished", job.error
    # the input was rendered by a temporary Write node, half EXR, in the working space (linear), then deleted
    sets = {(c[2], str(c[3])) for c in fake_nuke.calls if c[0] == "setValue" and c[1] == "Write1"}
    assert {("file_type", "exr"), ("datatype", "16 bit half"), ("colorspace", "linear")} <= sets
    # and sent in OCIO mode, so the model sees it display-referred and nothing clips
    assert job.argv[-4:] == ["--set", "colour.mode=ocio", "--set", "colour.input=linear"]
    assert ("execute", "Write1", 1001, 1006, 1) in fake_nuke.calls and ("delete", "Write1") in fake_nuke.calls
    # progress came from the JSON lines, in the worker thread
    (task,) = fake_nuke.state.progress_tasks
    assert task.progress[-1] == 100 and len(task.progress) >= 6
    assert any(m.startswith("frame 1006 (6/6)") for m in task.messages)
    # the Read node was created through executeInMainThread, from the worker thread
    assert ("executeInMainThread", "_create_read", False) in fake_nuke.calls
    (read,) = created
    out = str(tmp_path / "work" / "Grade1" / "Grade1_cinescale.####.exr")
    assert read.Class() == "Read" and read["file"].value() == out
    assert [read[k].value() for k in ("first", "last", "origfirst", "origlast")] == [1001, 1006, 1001, 1006]
    assert read["colorspace"].value() == "linear" and read["on_error"].value() == "black"
    assert (read.xpos(), read.ypos()) == (220, 200)
    assert sorted(tree_bytes(Path(out).parent, "Grade1_cinescale.*.exr")) == [
        f"Grade1_cinescale.{n}.exr" for n in range(1001, 1007)]


def test_read_node_file_is_used_directly_with_its_colourspace(nk, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=96, height=64)
    plate = tmp_path / "plates" / "bg.%04d.exr"
    make_sequence(plate, range(1001, 1005), size=(48, 32))
    read = fake_nuke.Node("Read", "Read3", first=1001, last=1004, file=str(plate), colorspace="ACES - ACEScg",
                          frame="")
    fake_nuke.state.selected = read
    job = nk.render_selected(preset=str(preset))
    (new_read,) = _finish(job)
    assert job.status == "finished", job.error
    assert not [c for c in fake_nuke.calls if c[0] == "execute"]  # no pre-render
    assert job.argv[job.argv.index("render") + 1] == str(plate)
    assert new_read["colorspace"].value() == "ACES - ACEScg"
    # the Read's colourspace reached the CLI, which resolved it in the pinned config
    assert "colour.input=ACES - ACEScg" in job.argv and "colour.mode=ocio" in job.argv
    manifest = json.loads((tmp_path / "work" / "Read3" / "Read3_cinescale.manifest.json").read_text())
    assert manifest["plan"]["colour"]["input"] == "ACEScg" and manifest["plan"]["colour"]["output"] == "ACEScg"


@pytest.mark.parametrize("colorspace, path, expect", [
    ("sRGB", "a.####.png", []), ("rec709", "a.mov", []), ("default", "a.mov", []),
    ("Output - sRGB", "a.####.exr", []),
    ("default (linear)", "a.####.exr", ["--set", "colour.mode=ocio", "--set", "colour.input=linear"]),
    ("default", "a.####.exr", ["--set", "colour.mode=ocio", "--set", "colour.input=linear"]),
    ("AlexaV3LogC", "a.####.dpx", ["--set", "colour.mode=ocio", "--set", "colour.input=AlexaV3LogC"]),
])
def test_colour_args_follow_the_read_colourspace(nk, colorspace, path, expect):
    assert nk.colour_args(colorspace, path) == expect


def test_project_ocio_config_is_passed(nk, tmp_path):
    fake_nuke.state.root_knobs = {"colorManagement": "OCIO", "OCIO_config": "custom",
                                  "customOCIOConfigPath": "/show/ocio/config.ocio"}
    assert nk.colour_args("ACEScg", "a.exr")[-2:] == ["--set", "colour.config=/show/ocio/config.ocio"]
    fake_nuke.state.root_knobs = {"colorManagement": "OCIO",
                                  "OCIO_config": "fn-nuke_studio-config-v1.0.0_aces-v1.3_ocio-v2.1"}
    assert nk.colour_args("ACEScg", "a.exr")[-1] == "colour.config=ocio://studio-config-v1.0.0_aces-v1.3_ocio-v2.1"
    fake_nuke.state.root_knobs = {"colorManagement": "Nuke", "workingSpaceLUT": "linear"}
    assert nk.colour_args("linear", "a.exr") == ["--set", "colour.mode=ocio", "--set", "colour.input=linear"]


def test_cancel_terminates_cleanly_and_creates_no_read(nk, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-slow", codec="exr", width=96, height=64)
    grade = fake_nuke.Node("Grade", "Grade2", first=1001, last=1012)
    fake_nuke.state.selected = grade
    fake_nuke.state.cancel_after_frames = 2  # the artist presses Cancel after two frames
    job = nk.render_selected(preset=str(preset))
    created = _finish(job)
    assert job.status == "cancelled"
    assert job.returncode == 143  # SIGTERM -> the CLI stopped between frames
    assert job.events[-1]["event"] == "finished" and job.events[-1]["status"] == "interrupted"
    assert created == [] and not [c for c in fake_nuke.calls if c[0] == "create" and c[1] == "Read"]
    out_dir = tmp_path / "work" / "Grade2"
    done = tree_bytes(out_dir, "Grade2_cinescale.*.exr")
    assert 2 <= len(done) < 12
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".")]  # temporaries removed


def test_cli_failure_reaches_the_artist_with_the_fix(nk, tmp_path):
    grade = fake_nuke.Node("Grade", "Grade3", first=1, last=2)
    fake_nuke.state.selected = grade
    job = nk.render_selected(preset="no-such-preset")
    _finish(job)
    assert job.status == "failed" and job.returncode == 2
    (msg,) = fake_nuke.state.messages
    assert "no-such-preset" in msg and "fix:" in msg


def test_nothing_selected_and_missing_cli_are_explained(nk, monkeypatch):
    assert nk.render_selected() is None
    assert "select the node" in fake_nuke.state.messages[-1]
    monkeypatch.delenv("CINESCALE_CLI")
    monkeypatch.setenv("PATH", "/nonexistent")
    fake_nuke.state.selected = fake_nuke.Node("Grade", "G", first=1, last=1)
    monkeypatch.setenv("CINESCALE_NUKE_PRESET", "uhd-exr-draft")
    assert nk.render_selected(preset="x") is None
    assert "CINESCALE_CLI" in fake_nuke.state.messages[-1]


def test_menu_registers_the_command(nk):
    sys.modules.pop("menu", None)
    importlib.import_module("menu")
    cmds = [c for c in fake_nuke.calls if c[0] == "addCommand"]
    assert ("addCommand", "Nuke/Cinescale", "Upscale selected node", "cinescale_nuke.render_selected()") in cmds
    sys.modules.pop("menu", None)
