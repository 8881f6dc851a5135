"""What a person reads at the end of a render (issue 17 items 5 and the
``--progress none`` bug): the bar, the summary line and error messages name
a sequence the way the user wrote it (``####``, ``@@@@``, ``$F4``...), not
the internal printf form; ``--progress none`` prints nothing but warnings
and errors. Real draft renders through the CLI in a subprocess."""

import json
from fractions import Fraction

import pytest

from cinescale_post.testing import make_clip

from .helpers import cli_env, run_cli as _run_cli, write_preset


def run_cli(args):
    # built-ins only: stderr holds what the render says, not how installed plugins load
    return _run_cli(args, env=cli_env(CINESCALE_LOAD_PLUGINS=""))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("naming")
    return make_clip(d / "in.mov", frames=3, size=(32, 24), rate=Fraction(24, 1), audio=None)


@pytest.fixture
def preset(tmp_path):
    return write_preset(tmp_path / "p.toml", codec="exr", width=64, height=48)


@pytest.mark.parametrize("token", ["####", "@@@@", "$F4", "{frame:04d}"])
def test_bar_and_summary_name_the_pattern_as_typed(tmp_path, clip, preset, token):
    out = tmp_path / "tt" / f"f.{token}.exr"
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "bar"])
    assert r.returncode == 0, r.stderr
    assert "%04d" not in r.stderr, r.stderr
    assert f"tt/f.{token}.exr" in r.stderr  # the bar's label and the summary
    assert f"finished: 3/3 frames -> {out} (3 files written)" in r.stderr, r.stderr
    assert sorted(p.name for p in out.parent.glob("*.exr")) == [f"f.{n}.exr" for n in (1001, 1002, 1003)]


def test_printf_typed_stays_printf_and_rerun_says_nothing_to_do(tmp_path, clip, preset):
    out = tmp_path / "tt" / "f.%04d.exr"
    args = ["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "bar"]
    assert run_cli(args).returncode == 0
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    assert f"finished: 3/3 frames -> {out} (nothing to do: every frame was already rendered)" in r.stderr, r.stderr


def test_errors_name_the_output_as_typed(tmp_path, clip, preset):
    out = tmp_path / "tt" / "f.####.exr"
    assert run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "none"]).returncode == 0
    other = write_preset(tmp_path / "q.toml", codec="exr", width=64, height=48, backend_options='upscaler = "bicubic"')
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(other), "--progress", "bar"])
    assert r.returncode == 4, r.stderr
    assert f"{out} holds frames of another render" in r.stderr and "%04d" not in r.stderr, r.stderr


def test_json_keeps_the_printf_form_and_adds_the_spelling(tmp_path, clip, preset):
    out = tmp_path / "tt" / "f.####.exr"
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "json"])
    assert r.returncode == 0, r.stderr
    start = next(e for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "start")
    assert start["output"] == str(tmp_path / "tt" / "f.%04d.exr")  # machine readers may expand it
    assert start["output_as_written"] == str(out)


def test_progress_none_prints_warnings_but_no_summary(tmp_path, clip, preset):
    out = tmp_path / "tt" / "f.####.exr"
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "none",
                 "--frames", "1001-1010"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "finished" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("warning: ") for ln in lines), r.stderr  # the clamped range, said once
    assert any("clamped" in ln for ln in lines), r.stderr


def test_commands_given_only_the_manifest_name_the_output_as_typed(tmp_path, clip, preset):
    """The manifest records the spelling at render start (``output_as_written``):
    the editorial step, ``assemble`` and ``qc`` given only the manifest answer
    with ``f.####.exr``, not the printf form inside the plan."""
    from cinescale_post.qc.report import rerender_command

    out = tmp_path / "tt" / "f.####.exr"
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", str(preset), "--progress", "none",
                 "--frames", "1001-1002"])
    assert r.returncode == 0, r.stderr
    manifest = tmp_path / "tt" / "f.manifest.json"
    data = json.loads(manifest.read_text())
    assert data["output_as_written"] == str(out) and data["plan"]["output"]["path"].endswith("f.%04d.exr")

    r = _editorial([str(manifest), "--frames", "1001-1003"])  # the farm's final step
    assert r.returncode == 4, r.stderr
    assert f"{out}: frames 1003 are not rendered" in r.stderr and "%04d" not in r.stderr, r.stderr

    r = run_cli(["assemble", str(manifest)])
    assert r.returncode == 3, r.stderr
    assert f"a frame-sequence render ({out}) needs no assembly" in r.stderr and "%04d" not in r.stderr, r.stderr

    # qc of the manifest alone; a detail threshold no draft reaches makes it flag (and say what to re-render)
    r = run_cli(["qc", str(manifest), "--no-plots", "--no-html", "--fail-on-flags", "--threshold", "detail_min=5"])
    assert r.returncode == 1, r.stderr
    assert f"frames flagged in {out}; re-render --frames 1001-1002" in r.stderr and "%04d" not in r.stderr, r.stderr
    report = json.loads((tmp_path / "tt" / "f.qc" / "report.json").read_text())
    assert report["setup"]["output"] == str(out) and str(clip) in report["setup"]["source"]
    assert f"-o {out} " in rerender_command(report).replace("'", ""), rerender_command(report)


def test_resume_under_another_spelling_records_the_latest(tmp_path, clip, preset):
    first, second = tmp_path / "tt" / "f.####.exr", tmp_path / "tt" / "f.$F4.exr"
    assert run_cli(["render", str(clip), "-o", str(first), "--preset", str(preset), "--progress", "none",
                    "--frames", "1001"]).returncode == 0
    r = run_cli(["render", str(clip), "-o", str(second), "--preset", str(preset), "--progress", "none"])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "tt" / "f.manifest.json").read_text())["output_as_written"] == str(second)


def _editorial(args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "cinescale_post.editorial", *args], capture_output=True, text=True,
                          env=cli_env(CINESCALE_LOAD_PLUGINS=""), timeout=300)
