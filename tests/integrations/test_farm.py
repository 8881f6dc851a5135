"""Farm recipes, run for real: each test expands its recipe's frame tokens the
way the farm does (Deadline task chunks and <QUOTE>/<STARTFRAME>/<ENDFRAME>;
Cuebot's #FRAME_START#/#FRAME_END#, including its last-chunk overshoot; the
OpenJD model library's own CHUNK[INT] iteration and format strings), runs the
resulting command lines as concurrent processes against a tiny clip with the
deterministic test backend, then the final step, and compares every output
byte for byte with a single local render."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import fileseq
import opentimelineio as otio
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.orchestrator.progress import NullSink
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip

from ..helpers import TEST_BACKENDS_DIST, cli_env, fake_distribution, run_cli, tree_bytes, write_preset

FARM = Path(__file__).resolve().parents[2] / "integrations" / "farm"
FRAMES = 12


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


deadline = _load("submit_deadline", FARM / "deadline" / "submit_deadline.py")
opencue = _load("cinescale_outline", FARM / "opencue" / "cinescale_outline.py")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A 'render node': the cinescale console script (a wrapper around this
    interpreter), the test backends behind a real entry point, and a clip in a
    folder whose name has a space (quoting is part of what is tested)."""
    root = tmp_path_factory.mktemp("farm")
    site = fake_distribution(root / "site", "cinescale-testbackends", TEST_BACKENDS_DIST)
    exe = root / "bin" / "cinescale"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cinescale_post \"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (root / "plates dir").mkdir()
    clip = make_clip(root / "plates dir" / "sh010 plate.mov", frames=FRAMES, size=(48, 32),
                     rate=Fraction(24000, 1001), timecode="01:00:00:00", audio="pcm_s24le", content="index")
    env = cli_env(site, CINESCALE_LOAD_PLUGINS="testbackends")
    return {"root": root, "exe": str(exe), "clip": clip, "env": env}


def _reference(tmp_path, preset, clip, name):
    """The same shot rendered by one local process."""
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    host = Host(load_entrypoints=False, extra_plugins=(tb,))
    out = tmp_path / "reference" / name
    run(plan_mod.build(str(preset), host=host, input=str(clip), output=str(out)), host, NullSink())
    return out.parent


def _run_all(argvs: list[list[str]], env) -> list[subprocess.CompletedProcess]:
    """Run task command lines at the same time, as farm nodes do."""
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for a in argvs]
    out = []
    for a, p in zip(argvs, procs):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(a, p.returncode, stdout, stderr))
    for r in out:
        assert r.returncode == 0, f"{r.args}\n{r.stdout}\n{r.stderr}"
    return out


# ------------------------------------------------------------------ Deadline


def deadline_tasks(job_info: dict) -> list[tuple[int, int]]:
    """Deadline splits the job's frame list into ChunkSize-frame tasks and
    gives each its first and last frame."""
    frames = list(fileseq.FrameSet(job_info["Frames"]))
    n = int(job_info["ChunkSize"])
    return [(frames[i], frames[min(i + n, len(frames)) - 1]) for i in range(0, len(frames), n)]


def deadline_argv(plugin_info: dict, start: int, end: int) -> list[str]:
    """What the CommandLine plugin runs: tokens replaced, then the argument
    string split like a command line (double quotes group)."""
    args = plugin_info["Arguments"]
    args = re.sub(r"<STARTFRAME%(\d+)>", lambda m: f"{start:0{int(m.group(1))}d}", args)
    args = re.sub(r"<ENDFRAME%(\d+)>", lambda m: f"{end:0{int(m.group(1))}d}", args)
    args = args.replace("<STARTFRAME>", str(start)).replace("<ENDFRAME>", str(end)).replace("<QUOTE>", '"')
    assert "<" not in args, f"unreplaced Deadline token in {args}"
    return [plugin_info["Executable"], *shlex.split(args)]


def test_deadline_movie_job_chunks_then_finalize(farm, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="prores_hq", width=96, height=64,
                          chunk=4)
    ref = _reference(tmp_path, preset, farm["clip"], "master.mov")
    out = tmp_path / "out dir" / "master.mov"
    files = deadline.job_files(str(farm["clip"]), str(out), frames=f"1001-{1000 + FRAMES}", chunk=5,
                               cinescale=[farm["exe"]], python=sys.executable, preset=str(preset), pool="gpu")
    written = deadline.write_job_files(str(tmp_path / "jobs"), files)
    render_job, render_plugin = (deadline.read_info(p) for p in written["render"])
    fin_job, fin_plugin = (deadline.read_info(p) for p in written["finalize"])
    assert render_job["Plugin"] == "CommandLine" and render_job["Pool"] == "gpu"
    assert render_job["OutputFilename0"] == "master.mov" and fin_job["Frames"] == "0"
    tasks = deadline_tasks(render_job)
    assert tasks == [(1001, 1005), (1006, 1010), (1011, 1012)]
    results = _run_all([deadline_argv(render_plugin, a, b) for a, b in tasks], farm["env"])
    assert all("PROGRESS" in r.stdout for r in results)  # --progress plain, for the Monitor log
    assert not out.exists()  # partial-range tasks leave chunk movies for the final step
    (fin,) = _run_all([deadline_argv(fin_plugin, 0, 0)], farm["env"])
    assert tree_bytes(out.parent, "*.mov") == tree_bytes(ref, "*.mov")
    tl = otio.adapters.read_from_file(fin.stdout.strip())
    assert tl.tracks[0][0].duration().value == FRAMES


def test_deadline_refuses_what_its_tokens_cannot_express(farm):
    for frames in ("1001-1100x2", "1001-1010,1020-1030"):
        with pytest.raises(deadline.SubmitError, match="contiguous"):
            deadline.job_files("/in.mov", "/out/a.mov", frames=frames, chunk=5, cinescale=["cinescale"],
                               python="python3")
    with pytest.raises(deadline.SubmitError, match="absolute path"):
        deadline.job_files("in.mov", "/out/a.mov", frames="1-2", chunk=5, cinescale=["c"], python="p")
    # --write-only from the command line gives the same files
    assert deadline.main(["/in.mov", "-o", "/out/a.####.exr", "--frames", "1001-1010", "--write-only",
                          str(farm["root"] / "wo")]) == 0
    plugin = deadline.read_info(str(farm["root"] / "wo" / "render.plugin_info.job"))
    assert deadline_argv(plugin, 1001, 1005)[-6:] == ["--start", "1001", "--end", "1005", "--progress", "plain"]


# ------------------------------------------------------------------ OpenCue


def cuebot_dispatch(spec: dict) -> list[tuple[int, int]]:
    """(#FRAME_START#, #FRAME_END#) per dispatched frame of a layer. Cuebot
    starts a chunk every `chunk` frames of the range and reports its end as
    start + chunk - 1, past the range on a short last chunk (OpenCue#1129)."""
    frames = list(fileseq.FrameSet(spec["range"]))
    n = int(spec["chunk"])
    return [(frames[i], frames[i] + n - 1) for i in range(0, len(frames), n)]


def cue_argv(command: list[str], start: int, end: int) -> list[str]:
    return [a.replace("#FRAME_START#", str(start)).replace("#FRAME_END#", str(end)) for a in command]


def test_opencue_sequence_job_with_subrange_never_renders_past_its_end(farm, tmp_path):
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=96, height=64)
    ref = _reference(tmp_path, preset, farm["clip"], "sh010.####.exr")
    out = tmp_path / "out dir" / "sh010.####.exr"
    specs = opencue.layers(str(farm["clip"]), str(out), frames="1001-1008", chunk=5, cinescale=[farm["exe"]],
                           python=sys.executable, preset=str(preset))
    assert [(s["name"], s["range"], s["chunk"]) for s in specs] == [
        ("render", "1001-1005", 5), ("render_tail", "1006-1008", 3), ("finalize", "1", 1)]
    assert specs[-1]["depends"] == ["render", "render_tail"]
    argvs = [cue_argv(s["command"], a, b) for s in specs[:-1] for a, b in cuebot_dispatch(s)]
    _run_all(argvs, farm["env"])
    _run_all([specs[-1]["command"]], farm["env"])
    got = tree_bytes(out.parent, "*.exr")
    assert sorted(got) == [f"sh010.{n}.exr" for n in range(1001, 1009)]  # nothing past 1008
    assert all(got[k] == v for k, v in tree_bytes(ref, "*.exr").items() if k in got)
    assert (out.parent / "sh010.otio").is_file()


def test_opencue_whole_plate_overshoot_is_clamped_by_the_cli(farm, tmp_path):
    """A plain single-layer job over the whole plate (what cuesubmit makes):
    the last chunk's #FRAME_END# runs past the clip and the CLI clamps it."""
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=96, height=64)
    ref = _reference(tmp_path, preset, farm["clip"], "sh010.####.exr")
    out = tmp_path / "cue" / "sh010.####.exr"
    command = opencue.render_command([farm["exe"]], str(farm["clip"]), str(out), preset=str(preset))
    layer = {"range": f"1001-{1000 + FRAMES}", "chunk": 5}
    dispatched = cuebot_dispatch(layer)
    assert dispatched[-1] == (1011, 1015)  # the overshoot: the clip ends at 1012
    results = _run_all([cue_argv(command, a, b) for a, b in dispatched], farm["env"])
    assert "WARNING requested frames clamped to 1001-1012" in results[-1].stdout
    assert tree_bytes(out.parent, "*.exr") == tree_bytes(ref, "*.exr")


def test_opencue_outline_is_built_with_pyoutline_api(monkeypatch):
    """build_outline against a fake ``outline`` package that records calls
    with PyOutline's signatures (Shell(name, **args) requires command; chunk
    and range are layer args; depend_all; cuerun.launch(use_pycuerun=...))."""
    import types

    calls = []

    class Layer:
        def __init__(self, name, **args):
            assert "command" in args, "PyOutline's Shell requires the command argument"
            self.name, self.args, self.service, self.env, self.deps = name, args, "shell", {}, []
            calls.append(("layer", type(self).__name__, name, args))

        def set_service(self, s):
            self.service = s

        def set_env(self, k, v):
            self.env[k] = v

        def depend_all(self, other):
            self.deps.append(other.name)

    class Shell(Layer):
        pass

    class ShellCommand(Layer):
        pass

    class Outline:
        def __init__(self, name, frame_range=None, shot=None, show=None, user=None):
            self.name, self.shot, self.show, self.layers = name, shot, show, []

        def add_layer(self, layer):
            self.layers.append(layer)

    def launch(ol, use_pycuerun=True, pause=False, **kw):
        calls.append(("launch", use_pycuerun, pause))
        return []

    pkg = types.ModuleType("outline")
    pkg.Outline = Outline
    pkg.cuerun = types.SimpleNamespace(launch=launch)
    mods = types.ModuleType("outline.modules")
    shell = types.ModuleType("outline.modules.shell")
    shell.Shell, shell.ShellCommand = Shell, ShellCommand
    for name, mod in (("outline", pkg), ("outline.modules", mods), ("outline.modules.shell", shell),
                      ("outline.cuerun", pkg.cuerun)):
        monkeypatch.setitem(sys.modules, name, mod)
    specs = opencue.layers("/in/a.mov", "/out/a.mov", frames="1001-1012", chunk=5, cinescale=["cinescale"],
                           python="python3")
    ol = opencue.build_outline("job", specs, show="show", shot="sh010", service="cinescale", tags=["gpu"])
    opencue.launch(ol)
    by_name = {layer.name: layer for layer in ol.layers}
    assert by_name["render"].args["range"] == "1001-1010" and by_name["render"].args["chunk"] == 5
    assert by_name["render_tail"].args["chunk"] == 2
    assert isinstance(by_name["finalize"], ShellCommand) and by_name["finalize"].deps == ["render", "render_tail"]
    assert {layer.service for layer in ol.layers} == {"cinescale"}
    assert calls[-1] == ("launch", False, False)  # tokens are substituted by Cuebot, no pycuerun wrapper


# ------------------------------------------------------------------ OpenJD


def openjd_commands(openjd, step, values, session: Path):
    """Each task's command line as an OpenJD runtime builds it: the step's
    embedded files written into the session folder (Task.File.*), then the
    format strings resolved with the job and task parameters."""
    symbols = {f"Param.{k}": v.value for k, v in values.items()}
    session.mkdir(parents=True, exist_ok=True)
    for f in step.script.embeddedFiles or ():
        path = session / (f.filename or f.name)
        path.write_text(f.data.resolve(symtab=openjd.SymbolTable(source=symbols)))
        symbols[f"Task.File.{f.name}"] = str(path)
    action = step.script.actions.onRun
    for task in openjd.StepParameterSpaceIterator(space=step.parameterSpace):
        row = openjd.SymbolTable(source={**symbols, **{f"Task.Param.{k}": v.value for k, v in task.items()}})
        yield [fs.resolve(symtab=row) for fs in (action.command, *action.args)]


def test_openjd_template_validates_and_its_chunks_render_the_shot(farm, tmp_path):
    yaml = pytest.importorskip("yaml")
    openjd = pytest.importorskip("openjd.model")
    template_path = FARM / "openjd" / "template.yaml"
    template = openjd.decode_job_template(template=yaml.safe_load(template_path.read_text()),
                                          supported_extensions=["TASK_CHUNKING"])
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="exr", width=96, height=64)
    ref = _reference(tmp_path, preset, farm["clip"], "sh010.####.exr")
    out = tmp_path / "jd out" / "sh010.####.exr"
    values = openjd.preprocess_job_parameters(
        job_template=template, job_parameter_values={
            "Input": str(farm["clip"]), "Output": str(out), "Frames": f"1001-{1000 + FRAMES}", "ChunkSize": "5",
            "Preset": str(preset), "Cinescale": farm["exe"], "Python": sys.executable},
        job_template_dir=template_path.parent, current_working_dir=tmp_path)
    job = openjd.create_job(job_template=template, job_parameter_values=values)
    steps = {s.name: s for s in job.steps}
    assert [d.dependsOn for d in steps["Finalize"].dependencies] == ["Render"]

    def commands(step):
        return openjd_commands(openjd, step, values, tmp_path / "session")

    render = list(commands(steps["Render"]))
    assert "--set" not in render[0]  # no Settings: the preset's own values
    chunks = [argv[argv.index("--frames") + 1] for argv in render]
    assert len(chunks) > 1 and all(re.fullmatch(r"\d+-\d+", c) for c in chunks)  # CONTIGUOUS "a-b" strings
    assert sorted(set().union(*(set(fileseq.FrameSet(c)) for c in chunks))) == list(range(1001, 1001 + FRAMES))
    _run_all(render, farm["env"])
    (finalize,) = list(commands(steps["Finalize"]))
    _run_all([finalize], farm["env"])
    assert tree_bytes(out.parent, "*.exr") == tree_bytes(ref, "*.exr")
    assert (out.parent / "sh010.otio").is_file()


def test_openjd_template_needs_the_chunking_extension():
    yaml = pytest.importorskip("yaml")
    openjd = pytest.importorskip("openjd.model")
    data = yaml.safe_load((FARM / "openjd" / "template.yaml").read_text())
    with pytest.raises(openjd.DecodeValidationError):
        openjd.decode_job_template(template=data)  # CHUNK[INT] is not core OpenJD


# ------------------------------------------------------------------ windows rendered once across tasks

_COUNTING = '''
import os

from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.testing.backends import TemporalNoiseBackend


class Counting(TemporalNoiseBackend):
    """test-temporal that logs every window it renders (one line per call)."""

    id = "test-counting"

    def render(self, job):
        with open(os.environ["CINESCALE_TEST_COUNT"], "a") as fh:
            fh.write(f"{os.getpid()} {job.frames[0].number}\\n")
        return super().render(job)


@hookimpl
def register_backends(register):
    register(Counting())
'''


def test_farm_tasks_render_each_temporal_window_once(farm, tmp_path):
    """Deadline tasks of 5 frames over 5-frame windows overlapping by 2
    (stride 3: no task boundary falls on a window boundary), all at the same
    time: each window is rendered by one task (--job-frames), the frames
    tasks share are handed on, and the master equals one local render."""
    site = fake_distribution(tmp_path / "site", "cinescale-counting", {"counting": "counting_backend"},
                             modules={"counting_backend": _COUNTING})
    count = tmp_path / "count.txt"
    env = cli_env(site, CINESCALE_LOAD_PLUGINS="counting", CINESCALE_TEST_COUNT=count)
    preset = write_preset(tmp_path / "p.toml", backend="test-counting", codec="prores_hq", width=96, height=64,
                          chunk=3, window=(5, 2))
    ref_out = tmp_path / "reference" / "master.mov"
    r = run_cli(["render", str(farm["clip"]), "-o", str(ref_out), "--preset", str(preset), "--progress", "none"],
                env=env)
    assert r.returncode == 0, r.stderr
    windows = len(count.read_text().splitlines())
    assert windows == 4  # 12 frames: windows at 0, 3, 6 and the end-aligned 7
    count.unlink()
    out = tmp_path / "out" / "master.mov"
    files = deadline.job_files(str(farm["clip"]), str(out), frames=f"1001-{1000 + FRAMES}", chunk=5,
                               cinescale=[farm["exe"]], python=sys.executable, preset=str(preset))
    written = deadline.write_job_files(str(tmp_path / "jobs"), files)
    render_job, render_plugin = (deadline.read_info(p) for p in written["render"])
    fin_job, fin_plugin = (deadline.read_info(p) for p in written["finalize"])
    _run_all([deadline_argv(render_plugin, a, b) for a, b in deadline_tasks(render_job)], env)
    _run_all([deadline_argv(fin_plugin, 0, 0)], env)
    assert len(count.read_text().splitlines()) == windows  # rendered / needed = 1.00
    assert tree_bytes(out.parent, "*.mov") == tree_bytes(ref_out.parent, "*.mov")


def test_farm_recipes_carry_the_colour_setting_through():
    """A plate's colour space (a value with spaces) reaches every task's
    command line intact, as the CLI parses it (issue 15)."""
    sets = ["colour.mode=ocio", "colour.input=ARRI LogC4"]
    jobs = deadline.job_files("/shots/a.####.exr", "/shots/up/a.####.exr", frames="1001-1010", chunk=5,
                              cinescale=["cinescale"], python="python3", preset="sdxl-uhd-refine-aces", sets=sets)
    line = jobs["render"][1]["Arguments"].replace("<QUOTE>", '"')
    cue = opencue.layers("/shots/a.####.exr", "/shots/up/a.####.exr", frames="1001-1010", chunk=5,
                         cinescale=["cinescale"], python="python3", preset="sdxl-uhd-refine-aces", sets=sets)
    for argv in (shlex.split(line), cue[0]["command"]):
        got = [plan_mod.parse_override(argv[i + 1]) for i, a in enumerate(argv) if a == "--set"]
        assert got == [("colour.mode", "ocio"), ("colour.input", "ARRI LogC4")], argv


def test_openjd_template_carries_the_settings_through(tmp_path):
    """The OpenJD Settings lines (colour space names with spaces) reach the
    CLI as one --set each, as it parses them, through the embedded launcher
    the runtime writes and runs (issue 15)."""
    yaml = pytest.importorskip("yaml")
    openjd = pytest.importorskip("openjd.model")
    template_path = FARM / "openjd" / "template.yaml"
    template = openjd.decode_job_template(template=yaml.safe_load(template_path.read_text()),
                                          supported_extensions=["TASK_CHUNKING"])
    argv_file = tmp_path / "argv.json"
    fake = tmp_path / "bin dir" / "cinescale"  # records what it was given
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\nsys.exit(7)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    settings = "colour.mode=ocio\r\n  colour.input=ARRI LogC4\n\n# a note\ncolour.output=ACES2065-1 \n"
    values = openjd.preprocess_job_parameters(
        job_template=template, job_parameter_values={
            "Input": "/shots/a plate.####.exr", "Output": "/shots/up/a.####.exr", "Frames": "1001-1010",
            "Preset": "sdxl-uhd-refine-aces", "Settings": settings, "Cinescale": str(fake),
            "Python": sys.executable},
        job_template_dir=template_path.parent, current_working_dir=tmp_path)
    job = openjd.create_job(job_template=template, job_parameter_values=values)
    render = {s.name: s for s in job.steps}["Render"]
    first = next(openjd_commands(openjd, render, values, tmp_path / "session"))
    done = subprocess.run(first, capture_output=True, text=True)
    assert done.returncode == 7, done.stderr  # the CLI's exit code is the task's
    argv = json.loads(argv_file.read_text())
    assert argv[:2] == ["render", "/shots/a plate.####.exr"]
    got = [plan_mod.parse_override(argv[i + 1]) for i, a in enumerate(argv) if a == "--set"]
    assert got == [("colour.mode", "ocio"), ("colour.input", "ARRI LogC4"), ("colour.output", "ACES2065-1")]


def _conform_report(farm, tmp_path):
    """A two-clip cut of the farm's plate and its `conform --dry-run` JSON."""
    preset = write_preset(tmp_path / "p.toml", backend="test-noise", codec="prores_hq", width=96, height=64,
                          chunk=4, audio=False)
    rate = otio.opentime.RationalTime
    tc = 86400  # 01:00:00:00 counts 24 frames a second at 23.976 (non-drop)
    ref = otio.schema.ExternalReference(target_url=str(farm["clip"]), available_range=otio.opentime.TimeRange(
        rate(tc, 24000 / 1001), rate(FRAMES, 24000 / 1001)))
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for name, start in (("sh010a", 1), ("sh010b", 7)):
        track.append(otio.schema.Clip(name, media_reference=ref, source_range=otio.opentime.TimeRange(
            rate(tc + start, 24000 / 1001), rate(4, 24000 / 1001))))
    tl = otio.schema.Timeline("cut")
    tl.tracks.append(track)
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(tl, str(cut))
    out = tmp_path / "conform out"
    dry = run_cli(["conform", str(cut), "-o", str(out), "--preset", str(preset), "--dry-run"], env=farm["env"])
    assert dry.returncode == 0, dry.stderr
    return json.loads(dry.stdout), tl, out


def _assert_relinked(tl, out):
    import urllib.parse
    import urllib.request

    import av

    relinked = otio.adapters.read_from_file(str(out / "cut.conformed.otio"))
    assert [c.range_in_parent() for c in relinked.find_clips()] == [c.range_in_parent() for c in tl.find_clips()]
    for clip in relinked.find_clips():
        local = urllib.request.url2pathname(urllib.parse.urlparse(clip.media_reference.target_url).path)
        with av.open(local) as c:
            n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        assert n == clip.media_reference.available_range.duration.to_frames()


def test_deadline_takes_a_conform_as_one_job_per_shot(farm, tmp_path):
    """`cinescale conform --dry-run` JSON -> one Deadline render job per shot
    and a conform job after them all; run as Deadline would, the conform job
    renders nothing left and writes the relinked cut."""
    report, tl, out = _conform_report(farm, tmp_path)
    files = deadline.conform_job_files(report, chunk=3, cinescale=[farm["exe"]], pool="gpu")
    assert sorted(files) == ["conform", *sorted(f"render-{s['shot']}" for s in report["shots"])]
    written = deadline.write_job_files(str(tmp_path / "jobs"), files)
    for role in [r for r in written if r != "conform"]:
        job, plugin = (deadline.read_info(p) for p in written[role])
        assert job["Pool"] == "gpu"
        _run_all([deadline_argv(plugin, a, b) for a, b in deadline_tasks(job)], farm["env"])
    job, plugin = (deadline.read_info(p) for p in written["conform"])
    (r,) = _run_all([deadline_argv(plugin, 0, 0)], farm["env"])
    assert "FINISHED finished" in r.stdout
    _assert_relinked(tl, out)


def test_opencue_takes_a_conform_as_layers_per_shot(farm, tmp_path):
    report, tl, out = _conform_report(farm, tmp_path)
    specs = opencue.conform_layers(report, chunk=3, cinescale=[farm["exe"]])
    assert specs[-1]["name"] == "conform" and specs[-1]["depends"] == [s["name"] for s in specs[:-1]]
    assert {s["name"].split("_")[0] for s in specs[:-1]} == {s["shot"].split("_")[0] for s in report["shots"]}
    _run_all([cue_argv(s["command"], a, b) for s in specs[:-1] for a, b in cuebot_dispatch(s)], farm["env"])
    (r,) = _run_all([specs[-1]["command"]], farm["env"])
    assert "FINISHED finished" in r.stdout
    _assert_relinked(tl, out)


def test_openjd_takes_a_conform_as_a_step_per_shot(farm, tmp_path):
    yaml = pytest.importorskip("yaml")
    openjd = pytest.importorskip("openjd.model")
    gen = _load("conform_template", FARM / "openjd" / "conform_template.py")
    report, tl, out = _conform_report(farm, tmp_path)
    written = tmp_path / "bundle" / "template.yaml"
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert gen.main([str(tmp_path / "report.json"), "-o", str(written), "--chunk", "3",
                     "--cinescale", farm["exe"]]) == 0
    template = openjd.decode_job_template(template=yaml.safe_load(written.read_text()),
                                          supported_extensions=["TASK_CHUNKING"])
    values = openjd.preprocess_job_parameters(job_template=template, job_parameter_values={},
                                              job_template_dir=written.parent, current_working_dir=tmp_path)
    job = openjd.create_job(job_template=template, job_parameter_values=values)
    steps = {s.name: s for s in job.steps}
    renders = [s for n, s in steps.items() if n.startswith("Render ")]
    assert len(renders) == len(report["shots"])
    assert sorted(d.dependsOn for d in steps["Conform"].dependencies) == sorted(s.name for s in renders)
    for step in renders:
        _run_all(list(openjd_commands(openjd, step, values, tmp_path / "session")), farm["env"])
    (conform,) = list(openjd_commands(openjd, steps["Conform"], values, tmp_path / "session"))
    (r,) = _run_all([conform], farm["env"])
    assert "FINISHED finished" in r.stdout
    _assert_relinked(tl, out)
