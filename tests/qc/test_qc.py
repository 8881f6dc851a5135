"""QC end to end on real draft renders: a clean render passes, planted
flicker and planted seams are flagged at the right frames, detail that moves
with the picture is not flicker, and the command line maps errors to exit codes."""

import json

import numpy as np
import pytest

from cinescale_post.qc.pipeline import run_qc

from .conftest import CHUNK, FRAMES, OUT_SIZE, frame_path, render, shift_brightness


def _qc(host, out, tmp_path, **kw):
    kw.setdefault("plots", False)
    kw.setdefault("html", False)
    kw.setdefault("sheets", 0)
    kw.setdefault("contact", 0)
    return run_qc(str(out), host=host, out_dir=str(tmp_path / "qc"), **kw).report


def _flagged(report, flag):
    return [f["frame"] for f in report["frames"] if flag in f["flags"]]


def add_moving_grain(pattern, numbers, *, seed: int, amount: float = 0.03) -> None:
    """Add fine grain that moves exactly with the picture (the clip pans 1 px
    left per frame and 1 px up every other frame at 64x48; 2x at 128x96)."""
    import cv2

    w, h = OUT_SIZE
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.standard_normal((2 * h + 64, 2 * w + 64)).astype(np.float32), (0, 0), 0.8)
    g *= amount / g.std()
    for n in numbers:
        i = n - 1001
        grain = g[2 * (i // 2) + 8: 2 * (i // 2) + 8 + h, 2 * i + 8: 2 * i + 8 + w]
        p = str(frame_path(pattern, n))
        a = cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.float64)
        cv2.imwrite(p, np.clip(a + grain[..., None] * 65535.0, 0, 65535).astype(np.uint16))


def test_clean_render_is_not_flagged(qc_host, clean_render, tmp_path):
    r = _qc(qc_host, clean_render, tmp_path)
    assert r["setup"]["manifest"] and r["setup"]["chunk"] == CHUNK  # chunk grid from the manifest
    assert [c["id"] for c in r["chunks"]] == ["1001-1004", "1005-1008", "1009-1012"]
    assert [(s["before"], s["after"]) for s in r["seams"]] == [(1004, 1005), (1008, 1009)]
    assert r["summary"]["flagged_frames"] == r["summary"]["flagged_chunks"] == r["summary"]["flagged_seams"] == 0
    assert r["rerender"] == {"frames": "", "count": 0}
    frames = r["frames"]
    assert len(frames) == FRAMES
    # The source really moves (its own warping error is not zero), and the
    # draft render adds nothing on top: flicker ~ 0, drift small, gain ~ 1.
    assert all(f["warp_error_source"] > 0.005 for f in frames[1:])
    assert max(f["flicker"] for f in frames) < 0.002
    assert max(f["drift_mean"] for f in frames) < 0.5
    assert all(0.95 < f["detail_gain"] < 1.05 for f in frames)


def test_planted_flicker_is_flagged_at_its_frames(qc_host, render_copy, tmp_path):
    shift_brightness(render_copy, [1004, 1010], 0.04)  # 1004 ends a chunk: next to a boundary
    r = _qc(qc_host, render_copy, tmp_path)
    assert _flagged(r, "flicker") == [1004, 1010]
    by = {f["frame"]: f for f in r["frames"]}
    assert by[1004]["flicker"] == pytest.approx(0.04, abs=0.004)
    assert by[1003]["flicker"] < 0.002 and by[1005]["flicker"] < 0.002  # neighbours stay clean
    assert not any(s["flagged"] for s in r["seams"])  # the jump at 1004|1005 is 1004's flicker
    assert r["rerender"]["frames"] == "1004,1010"
    assert [c["flags"] for c in r["chunks"]] == [["frames"], [], ["frames"]]


@pytest.mark.parametrize("plant", ["brightness step", "grain re-rolled"])
def test_planted_seam_is_flagged_at_its_boundary(qc_host, render_copy, tmp_path, plant):
    if plant == "brightness step":
        shift_brightness(render_copy, range(1009, 1013), 0.02)
    else:  # a chunk whose added detail comes from another noise field
        add_moving_grain(render_copy, range(1001, 1009), seed=1)
        add_moving_grain(render_copy, range(1009, 1013), seed=2)
    r = _qc(qc_host, render_copy, tmp_path)
    seams = {(s["before"], s["after"]): s for s in r["seams"]}
    assert seams[(1008, 1009)]["flagged"] and not seams[(1004, 1005)]["flagged"]
    assert seams[(1008, 1009)]["score"] > 0.015
    assert _flagged(r, "flicker") == []  # a step belongs to the boundary, not to a frame
    assert r["chunks"][2]["flags"] == ["seam"] and r["chunks"][0]["flags"] == r["chunks"][1]["flags"] == []
    assert r["rerender"]["frames"] == "1008-1009"


def test_detail_that_moves_with_the_picture_is_not_flicker(qc_host, render_copy, tmp_path):
    add_moving_grain(render_copy, range(1001, 1013), seed=1)
    r = _qc(qc_host, render_copy, tmp_path)
    assert _flagged(r, "flicker") == [] and not any(s["flagged"] for s in r["seams"])
    # ~0.001; the picture entering at the frame edge has no flow and must be
    # left out, or it alone reads as ~0.004.
    assert max(f["flicker"] for f in r["frames"]) < 0.0025
    assert all(f["detail_gain"] > 1.5 for f in r["frames"])  # the grain is added detail


def test_grain_that_boils_is_flicker_everywhere(qc_host, render_copy, tmp_path):
    for n in range(1001, 1013):  # a new noise field every frame: what per-frame seeds do
        add_moving_grain(render_copy, [n], seed=n)
    r = _qc(qc_host, render_copy, tmp_path)
    assert len(_flagged(r, "flicker")) == FRAMES
    assert all("flicker" in c["flags"] for c in r["chunks"])
    assert r["rerender"]["frames"] == "1001-1012"


def test_movie_render_with_letterbox_uses_the_manifest(qc_host, source_clip, tmp_path):
    out = render(qc_host, tmp_path, source_clip, codec="prores_hq", size=(128, 80), name="m/master.mov")
    r = _qc(qc_host, out, tmp_path)
    assert r["setup"]["source"] == str(source_clip) and r["setup"]["first_frame"] == 1001
    assert r["sizes"]["picture"] == [107, 80]  # only the picture is measured, not the black bars
    assert [c["id"] for c in r["chunks"]] == ["1001-1004", "1005-1008", "1009-1012"]
    assert r["summary"]["flagged_frames"] == r["summary"]["flagged_seams"] == 0
    # ProRes 4:2:2 bleeds the black bars into the picture's edge columns a
    # little; still half the drift threshold.
    assert max(f["drift_mean"] for f in r["frames"]) < 1.0


def test_rotated_source_is_turned_like_the_render_turned_it(qc_host, tmp_path):
    from cinescale_post.testing import make_clip

    from .conftest import moving_texture

    clip = make_clip(tmp_path / "rot.mov", frames=5, size=(64, 48), content=moving_texture, rotation=90)
    out = render(qc_host, tmp_path, clip, size=(96, 128))
    r = _qc(qc_host, out, tmp_path)
    assert r["sizes"]["placement"]["rotate"] == 90 and r["sizes"]["picture"] == [96, 128]
    assert r["summary"]["flagged_frames"] == 0 and max(f["drift_mean"] for f in r["frames"]) < 0.5


def test_without_a_manifest_source_and_chunk_come_from_options(qc_host, render_copy, source_clip, tmp_path):
    shift_brightness(render_copy, range(1009, 1013), 0.02)
    (render_copy.parent / "f.manifest.json").unlink()
    r = _qc(qc_host, render_copy, tmp_path, source=str(source_clip), chunk=CHUNK)
    assert r["setup"]["manifest"] is None
    assert [s["after"] for s in r["seams"] if s["flagged"]] == [1009]
    r = _qc(qc_host, render_copy, tmp_path, source=str(source_clip))
    assert r["seams"] == [] and len(r["chunks"]) == 1  # no chunk grid known: no seams
    r = _qc(qc_host, render_copy, tmp_path, source=str(source_clip), frames="1003-1004,1007")
    assert [f["frame"] for f in r["frames"]] == [1003, 1004, 1007]
    by = {f["frame"]: f for f in r["frames"]}
    assert by[1004]["warp_error"] > 0.005  # 1003 -> 1004 is measured ...
    assert by[1007]["flicker_in"] is None and by[1007]["warp_error"] is None  # ... 1004 -> 1007 is no transition


# ---------------------------------------------------------------- command line


@pytest.fixture
def cli_main():
    """``cli.main`` with the QC commands added (until the CLI adds them itself)."""
    import cinescale_post.cli.commands as cli
    from cinescale_post.cli.qc_commands import QC_COMMANDS

    added = [c for c in QC_COMMANDS if c.name not in cli.cli.commands]
    for c in added:
        cli.cli.add_command(c)

    def call(*args):
        with pytest.raises(SystemExit) as exc:
            cli.main(["--no-plugins", *map(str, args)])
        return exc.value.code

    try:
        yield call
    finally:
        for c in added:
            cli.cli.commands.pop(c.name, None)


def test_qc_command_writes_report_and_prints_frames(cli_main, render_copy, tmp_path, capsys):
    shift_brightness(render_copy, [1006], 0.05)
    code = cli_main("qc", render_copy, "--report-dir", tmp_path / "qc", "--no-plots", "--progress", "none")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "re-render: --frames 1006" in out and str(tmp_path / "qc" / "report.json") in out
    report = json.loads((tmp_path / "qc" / "report.json").read_text())
    assert report["rerender"]["frames"] == "1006"
    code = cli_main("qc", render_copy, "-o", tmp_path / "qc", "--no-plots", "--no-html", "--json",
                    "--threshold", "flicker=0.1", "--threshold", "drift_mean=10", "--threshold", "drift_p95=20")
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["rerender"]["frames"] == "" and printed["thresholds"]["flicker"] == 0.1


@pytest.mark.parametrize("args,code,words", [
    (["qc", "{tmp}/nope.####.png"], 2, ["no render manifest", "--source"]),
    (["qc", "{tmp}/nope.####.png", "--source", "{src}"], 3, ["nope.####.png"]),
    (["qc", "{out}", "--threshold", "flick=1"], 2, ["unknown threshold", "flicker (default 0.02)"]),
    (["qc", "{out}", "--threshold", "flicker=-1"], 2, ["flicker", ">= 0"]),
    (["qc", "{out}", "--frames", "ten"], 2, ["--frames", "1001-1100"]),
    (["qc", "{out}", "--frames", "2001-2005"], 3, ["no frame to compare", "1001-1012"]),
    (["compare", "{src}", "{out}", "-o", "{tmp}/sheet.jpg"], 2, ["PNG"]),
    (["compare", "{src}", "{tmp}/missing.mov", "-o", "{tmp}/s.png"], 3, ["missing.mov"]),
    (["compare", "{src}", "{out}", "--frames", "999", "-o", "{tmp}/s.png"], 2, ["no frame 999", "1001-1012"]),
    (["compare", "{src}", "{out}", "--frames", "ten", "-o", "{tmp}/s.png"], 2, ["--frames", "1001-1010"]),
    (["qc", "{out}", "-o", "{tmp}/a", "--report-dir", "{tmp}/b"], 2, ["disagree", "-o"]),
    (["compare", "{src}", "{out}", "--wipe", "2", "-o", "{tmp}/s.png"], 2, ["--wipe"]),
    (["contact-sheet", "{out}", "-o", "{tmp}/c.png", "--frames", "1001-1020"], 2, ["no frame 1013"]),
])
def test_command_errors_exit_with_the_contract_codes(cli_main, clean_render, source_clip, tmp_path, capsys,
                                                     args, code, words):
    args = [a.format(tmp=tmp_path, src=source_clip, out=clean_render) for a in args]
    if args[0] == "qc":
        args += ["-o", str(tmp_path / "qc"), "--no-plots", "--no-html", "--progress", "none"]
    assert cli_main(*args) == code
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err


def test_fail_on_flags_exits_1_with_the_frames_to_rerender(cli_main, render_copy, tmp_path, capsys):
    args = ["qc", render_copy, "-o", tmp_path / "qc", "--no-plots", "--no-html", "--progress", "none"]
    assert cli_main(*args, "--fail-on-flags") == 0  # clean: the gate opens
    assert "flagged" not in capsys.readouterr().err
    shift_brightness(render_copy, [1006, 1010], 0.05)
    assert cli_main(*args) == 0  # without the flag, flags are a report, not a failure
    capsys.readouterr()
    assert cli_main(*args, "--fail-on-flags") == 1
    err = capsys.readouterr().err
    assert "2 frames flagged" in err and "--frames 1006,1010" in err


def test_old_spellings_are_hidden_aliases(cli_main, render_copy, source_clip, tmp_path, capsys):
    """``qc --report-dir`` and ``compare --frame`` still work for a release,
    but help shows one vocabulary: -o, --frames, --first-frame [default: 1001]."""
    assert cli_main("qc", render_copy, "--report-dir", tmp_path / "old", "--no-plots", "--no-html",
                    "--progress", "none") == 0
    assert (tmp_path / "old" / "report.json").is_file()
    assert cli_main("compare", source_clip, render_copy, "--frame", "1002", "--frame", "1003",
                    "-o", tmp_path / "old.png") == 0
    assert cli_main("compare", source_clip, render_copy, "--frames", "1002-1003", "-o", tmp_path / "new.png") == 0
    assert (tmp_path / "old.png").read_bytes() == (tmp_path / "new.png").read_bytes()
    capsys.readouterr()
    helps = {}
    for cmd in ("qc", "compare", "render"):
        assert cli_main(cmd, "--help") == 0
        helps[cmd] = capsys.readouterr().out
    assert "--report-dir" not in helps["qc"] and "-o, --output" in helps["qc"]
    assert "--frame " not in helps["compare"] and "--frames" in helps["compare"]
    for cmd in ("qc", "render"):
        line = " ".join(helps[cmd].split("--first-frame", 1)[1].split())
        assert "[default: 1001]" in line.split("--")[0], line


def test_compare_and_contact_sheet_commands_write_their_sheets(cli_main, render_copy, source_clip, qc_host,
                                                                tmp_path, capsys):
    import cinescale_post.qc.draw as draw
    from cinescale_post.qc.compare import compare_paths, contact_sheet

    shift_brightness(render_copy, [1006], 0.05)
    assert cli_main("qc", render_copy, "--no-plots", "--no-html", "--progress", "none") == 0
    assert (render_copy.parent / "f.qc" / "report.json").is_file()  # default folder: next to the render
    capsys.readouterr()
    assert cli_main("contact-sheet", render_copy, "-o", tmp_path / "c.png", "--frames", "1005-1007",
                    "--width", "64") == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c.png")
    # The QC report next to the render was found: 1006 is framed as flagged.
    kw = {"host": qc_host, "frames": [1005, 1006, 1007], "thumb_width": 64}
    want, _ = contact_sheet(str(render_copy), flags={1006: ["flicker", "drift"]}, **kw)
    unflagged, _ = contact_sheet(str(render_copy), **kw)
    got = draw.read_png(tmp_path / "c.png")
    np.testing.assert_array_equal(got, want)
    assert (got != unflagged).any()
    assert cli_main("compare", source_clip, render_copy, "--frame", "1006", "--label", "src", "out",
                    "--panel-width", "128", "-o", tmp_path / "s.png") == 0
    want, _ = compare_paths(str(source_clip), str(render_copy), host=qc_host, frames=[1006], labels=("src", "out"),
                            panel_width=128)
    np.testing.assert_array_equal(draw.read_png(tmp_path / "s.png"), want)


def test_unassembled_movie_render_points_to_assemble(qc_host, source_clip, tmp_path):
    from cinescale_post.contracts.errors import InputError

    out = render(qc_host, tmp_path, source_clip, codec="prores_hq", name="m/master.mov")
    out.unlink()  # as after `cinescale render --no-assemble`
    with pytest.raises(InputError, match="cinescale assemble") as exc:
        _qc(qc_host, out, tmp_path)
    assert exc.value.exit_code == 3
