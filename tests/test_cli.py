"""The command line as editors and farms call it: exit codes, messages,
--dry-run, --progress json/plain, presets and probe."""

import json
import os
from fractions import Fraction

import pytest

from cinescale_post.testing import make_clip

from .helpers import run_cli, write_preset


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return make_clip(d / "in.mov", frames=4, size=(64, 48), rate=Fraction(24000, 1001), timecode="01:00:00:00")


@pytest.fixture
def preset(tmp_path):
    return write_preset(tmp_path / "p.toml", codec="exr")


def test_dry_run_prints_resolved_plan(tmp_path, clip):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "m.mov"), "--preset", "uhd-draft",
                 "--set", "output.codec=prores_4444", "--dry-run"])
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["output"]["codec"] == "prores_4444" and plan["output"]["width"] == 3840
    assert plan["frames"] == "1001-1004" and plan["source"]["rate"] == "24000/1001"
    assert not (tmp_path / "m.mov").exists()


@pytest.mark.parametrize("args,code,words", [
    (["--preset", "nope"], 2, ["unknown preset", "uhd-draft"]),
    (["--set", "output.codec=prores_ultra"], 2, ["unknown codec", "prores_hq"]),
    (["--set", "output.width=wide"], 2, ["output.width", "must be an integer"]),
    (["--set", "output.fitt=pad"], 2, ["unknown key", "output.fitt", "output.fit"]),
    (["--set", "backend=sdxl-nope"], 2, ["unknown backend", "draft"]),
    (["--set", "backend_options.upscaler=nearest"], 2, ["upscaler", "lanczos"]),
])
def test_bad_plan_values_exit_2_and_name_the_key(tmp_path, clip, args, code, words):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "m.mov"), *args, "--dry-run"])
    assert r.returncode == code, r.stderr
    for w in words:
        assert w in r.stderr


def test_preset_with_wrong_type_names_the_file(tmp_path, clip):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\nbackend = "draft"\n[output]\ncodec = "exr"\nwidth = "4k"\n')
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "o.####.exr"), "--preset", str(bad)])
    assert r.returncode == 2 and str(bad) in r.stderr and "output.width" in r.stderr


def test_missing_and_non_media_inputs_exit_3(tmp_path, preset):
    r = run_cli(["render", str(tmp_path / "nope.mov"), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 3 and "nope.mov" in r.stderr
    junk = tmp_path / "notes.mov"
    junk.write_text("not a movie at all\n" * 10)
    r = run_cli(["render", str(junk), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 3 and "notes.mov" in r.stderr


def test_truncated_movie_exits_3(tmp_path, preset):
    full = make_clip(tmp_path / "t.mov", frames=4)
    data = full.read_bytes()
    (tmp_path / "cut.mov").write_bytes(data[: len(data) // 2])
    r = run_cli(["render", str(tmp_path / "cut.mov"), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 3 and "cut.mov" in r.stderr


def test_zero_frame_clip_exits_3(tmp_path, preset):
    import av

    p = tmp_path / "empty.mov"
    with av.open(str(p), "w") as c:
        s = c.add_stream("prores_ks", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv422p10le"
    r = run_cli(["render", str(p), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 3 and "empty.mov" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the unwritable-path case below")
def test_unwritable_output_exits_4_permissions(tmp_path, clip, preset):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run_cli(["render", str(clip), "-o", str(ro / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 4


def test_unwritable_output_exits_4(tmp_path, clip, preset):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = run_cli(["render", str(clip), "-o", str(blocker / "sub" / "o.####.exr"), "--preset", str(preset)])
    assert r.returncode == 4 and "cannot be written" in r.stderr


def test_sequence_codec_needs_a_frame_token(tmp_path, clip, preset):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "out.exr"), "--preset", str(preset)])
    assert r.returncode == 2 and "####" in r.stderr


def test_progress_json_lines(tmp_path, clip, preset):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset),
                 "--progress", "json"])
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished" and kinds.count("frame") == 4
    last_frame = [e for e in events if e["event"] == "frame"][-1]
    assert last_frame["done"] == last_frame["total"] == 4 and last_frame["pct"] == 100.0
    assert {"fps", "eta_s", "peak_rss_mb"} <= set(last_frame)


def test_progress_json_reports_plan_errors(tmp_path, clip):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "o.mov"), "--preset", "nope", "--progress", "json"])
    assert r.returncode == 2
    (ev,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert ev["event"] == "error" and ev["exit_code"] == 2


def test_progress_plain_and_empty_range(tmp_path, clip, preset):
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset),
                 "--progress", "plain", "--start", "1003", "--end", "1010"])
    assert r.returncode == 0, r.stderr
    assert "PROGRESS 100.0%" in r.stdout and "clamped" in r.stdout
    r = run_cli(["render", str(clip), "-o", str(tmp_path / "o.####.exr"), "--preset", str(preset),
                 "--frames", "5000-5010", "--progress", "plain"])
    assert r.returncode == 0 and "no frames" in r.stdout


def test_presets_and_probe(clip):
    r = run_cli(["presets", "list", "--json"])
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"uhd-draft", "uhd-exr-draft"} <= names
    r = run_cli(["presets", "show", "uhd-exr-draft"])
    assert 'compression = "piz"' in r.stdout
    r = run_cli(["probe", str(clip), "--json"])
    info = json.loads(r.stdout)
    assert info["rate"] == "24000/1001" and info["frame_count"] == 4 and info["timecode"] == "01:00:00:00"
    r = run_cli(["probe", str(clip)])
    assert r.returncode == 0 and "24000/1001" in r.stdout


def test_doctor_smoke_runs_every_installed_backend():
    import torch

    r = run_cli(["doctor", "--smoke"])
    assert "codecs          all present" in r.stdout
    # --device defaults to auto, resolved like render's (the GPU when there is one).
    assert f"smoke test on {'cuda' if torch.cuda.is_available() else 'cpu'} " in r.stdout
    assert "[default: auto]" in " ".join(run_cli(["doctor", "--help"]).stdout.split())
    assert "not pictures" in r.stdout
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result: OK" in r.stdout


@pytest.mark.parametrize("when", ["planning", "rendering"])
def test_an_error_prints_once_in_bar_mode(tmp_path, clip, when):
    """Issue 26 item 3: the bar sink no longer echoes the error the CLI prints
    (with its fix and exit code) right after."""
    from tests.media import realworld as rw

    if when == "planning":
        src = tmp_path / "missing.mov"
    else:  # a frame the decoder rejects, met during the render (--on-bad-frame error)
        good = rw.lavfi_clip(tmp_path / "good.avi", rate="25", seconds=1,
                             vcodec=["-c:v", "mpeg4", "-bf", "0", "-g", "5"], acodec=None)
        src = tmp_path / "bad.avi"
        rw.corrupt_after_vop_header(good, src, 12)
    r = run_cli(["render", str(src), "-o", str(tmp_path / "o" / "f.####.exr"), "--preset", "uhd-exr-draft",
                 "--set", "output.width=64", "--set", "output.height=48", "--progress", "bar"],
                env={**os.environ, "CINESCALE_LOAD_PLUGINS": ""})
    assert r.returncode in (3, 4), r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:") or "\rerror:" in line]
    assert len(errors) == 1, r.stderr
