"""What people look at: the plots, comparison and contact sheets, and the
HTML page -- opened and checked panel by panel (and rendered in headless
Chromium when it is installed)."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import cinescale_post.qc.draw as draw
import cinescale_post.qc.plots as plots
import cinescale_post.qc.metrics as m
from cinescale_post.qc.compare import busiest_regions, compare_images, compare_paths, contact_sheet
from cinescale_post.qc.pipeline import run_qc

from .conftest import frame_path, shift_brightness

CHROMIUM = "/usr/bin/chromium"


def _close(img, xy, colour, tol=40):
    x, y = xy
    patch = img[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(colour)).max(axis=1) <= tol).any())


def _panel(img, box):
    x, y, w, h = box
    return img[y:y + h, x:x + w]


# ---------------------------------------------------------------- plots


def test_line_plot_draws_values_thresholds_boundaries_and_flags():
    xs = list(range(1001, 1013))
    ys = [0.0, 0.01, 0.06, 0.01, 0.0, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0]
    img, ax = plots.line_plot("t", xs, [("v", ys, plots.BLUE)], thresholds=[("th", 0.02)],
                              boundaries=[1005, 1009], seams=[1009], flagged=[(1003, 0.06)])
    assert img.shape == (plots.SIZE[1], plots.SIZE[0], 3) and img.dtype == np.uint8
    bx, by, bw, bh = ax.box
    assert 0 < bx and bx + bw <= img.shape[1] and 0 < by and by + bh <= img.shape[0]
    assert ax.y0 == 0.0 and ax.y1 >= 0.06
    row = img[ax.y_px(0.02), bx:bx + bw].astype(int)  # dashed threshold: about half the row is red
    red = (np.abs(row - plots.RED).max(axis=1) <= 10).mean()
    assert 0.3 < red < 0.7
    assert _close(img, (ax.x_px(1003), ax.y_px(0.06)), plots.RED, tol=10)  # the flagged point
    assert _close(img, (ax.x_px(1011), ax.y_px(0.0)), plots.BLUE)  # the series where it is
    mid = lambda b: (ax.x_px(b - 1) + ax.x_px(b)) // 2
    y_mid = by + bh // 3
    assert _close(img, (mid(1005), y_mid), plots.BOUNDARY, tol=10)
    assert _close(img, (mid(1009), y_mid), plots.ORANGE, tol=10)  # the flagged seam
    assert not _close(img, (mid(1007), y_mid), plots.ORANGE, tol=60)


def test_report_plots_are_written_and_show_the_flags(qc_host, render_copy, tmp_path):
    shift_brightness(render_copy, [1006], 0.05)
    res = run_qc(str(render_copy), host=qc_host, out_dir=str(tmp_path / "qc"), sheets=1, contact=6)
    rep = res.report
    drawn = plots.report_plots(rep)
    for name in ("flicker", "drift", "detail"):
        on_disk = draw.read_png(res.files[name])
        np.testing.assert_array_equal(on_disk, drawn[name][0])  # exactly what was drawn
        assert on_disk.std() > 10  # not an empty canvas
    img, ax = drawn["flicker"]
    f = next(fr for fr in rep["frames"] if fr["frame"] == 1006)
    assert _close(img, (ax.x_px(1006), ax.y_px(f["flicker"])), plots.RED, tol=10)
    assert not _close(img, (ax.x_px(1002), ax.y_px(0.0)), plots.RED, tol=10)
    img, ax = drawn["drift"]
    assert _close(img, (ax.x_px(1006), ax.y_px(f["drift_mean"])), plots.RED, tol=10)
    assert set(rep["files"]) == {"flicker", "drift", "detail", "contact", "frame.1006"}
    for name in rep["files"].values():
        assert (tmp_path / "qc" / name).stat().st_size > 1000


# ---------------------------------------------------------------- comparison sheets


def _texture(h, w, seed=3):
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0) * 0.6 + 0.2


def test_compare_sheet_panels_hold_what_they_say():
    a = _texture(48, 64)
    b = m.lanczos(a, (128, 96))
    b[60:76, 90:106] = np.indices((16, 16)).sum(0)[..., None] % 2  # a busy checkerboard the render "added"
    sheet, lay = compare_images([("still", a, b)], labels=("src", "out"), amplify=4, wipe=0.25, crops=2,
                                crop_size=32, panel_width=256)
    box = lay.boxes
    assert lay.compare_size == (128, 96) and lay.panel_scale == 2.0
    for name in ("a", "b", "wipe", "diff"):
        assert box[f"still.{name}"][2:] == (256, 192)
    assert box["still.a"][1] == box["still.b"][1] < box["still.wipe"][1] == box["still.diff"][1]
    assert box["still.a"][0] == box["still.wipe"][0] < box["still.b"][0] == box["still.diff"][0]
    da = draw.fit_into(draw.to_display(m.lanczos(a, (128, 96))), 256)
    db = draw.fit_into(draw.to_display(b), 256)
    np.testing.assert_array_equal(_panel(sheet, box["still.a"]), da)  # A, scaled to B's size
    wipe = _panel(sheet, box["still.wipe"])
    np.testing.assert_array_equal(wipe[:, :lay.wipe_x - 1], da[:, :lay.wipe_x - 1])
    np.testing.assert_array_equal(wipe[:, lay.wipe_x + 1:], db[:, lay.wipe_x + 1:])
    assert lay.wipe_x == 64 and (wipe[:, lay.wipe_x] == 255).all()  # the wipe line
    diff = _panel(sheet, box["still.diff"]).astype(int)
    assert np.abs(diff[:100, :150] - 128).max() <= 2  # equal there: mid grey
    assert np.abs(diff[124:148, 184:208] - 128).max() > 100  # the checkerboard, amplified
    # B's panel is B, apart from the outlines that show where the crops come from.
    pb = _panel(sheet, box["still.b"])
    same = (pb == db).all(-1)
    assert same.mean() > 0.9
    # Crop 1 is the checkerboard, at 1:1, from B; no two crops overlap.
    (cx, cy, cw, ch), second = lay.crops["still"]
    assert (cw, ch) == (32, 32) and cx <= 90 and cx + 32 >= 106 and cy <= 60 and cy + 32 >= 76
    np.testing.assert_array_equal(_panel(sheet, box["still.crop0.b"]), draw.to_display(b)[cy:cy + 32, cx:cx + 32])
    np.testing.assert_array_equal(_panel(sheet, box["still.crop0.a"]),
                                  draw.to_display(m.lanczos(a, (128, 96)))[cy:cy + 32, cx:cx + 32])
    sx, sy = second[:2]
    assert abs(sx - cx) >= 32 or abs(sy - cy) >= 32
    assert box["still.crop0.a"][1] > box["still.wipe"][1] + 192  # crops sit below the panels


def test_busiest_regions_pick_detail_and_never_overlap():
    img = np.full((64, 96, 3), 0.5, np.float32)
    img[40:56, 70:86] = np.indices((16, 16)).sum(0)[..., None] % 2
    img[4:12, 4:12] = np.indices((8, 8)).sum(0)[..., None] % 2 * 0.3
    boxes = busiest_regions(img, img, 3, 16)
    assert boxes[0] == (70, 40, 16, 16)
    assert boxes[1][0] <= 4 and boxes[1][1] <= 4  # the fainter pattern comes second
    for i, (x, y, w, h) in enumerate(boxes):
        for (x2, y2, _, _) in boxes[i + 1:]:
            assert abs(x - x2) >= w or abs(y - y2) >= h


def test_compare_clip_frames_stack_one_block_per_frame(qc_host, source_clip, clean_render, tmp_path):
    sheet, lay = compare_paths(str(source_clip), str(clean_render), host=qc_host, frames=[1005, 1006],
                               labels=("source", "render"), crops=1, crop_size=32, panel_width=128)
    assert lay.boxes["1005.a"][1] < lay.boxes["1006.a"][1]
    assert sheet.shape[0] > lay.boxes["1006.crop0.diff"][1] + 32
    diff = _panel(sheet, lay.boxes["1006.diff"]).astype(int)
    assert np.abs(diff - 128).mean() < 3  # a clean Lanczos render is the Lanczos-scaled source
    path = draw.write_png(tmp_path / "sheet.png", sheet)
    np.testing.assert_array_equal(draw.read_png(path), sheet)


def test_compare_two_stills(qc_host, tmp_path):
    import cv2

    a = _texture(48, 64)
    b = a.copy()
    b[:, 32:] += 0.1
    for name, img in (("a.png", a), ("b.png", b)):
        cv2.imwrite(str(tmp_path / name), (np.clip(img, 0, 1)[..., ::-1] * 65535).astype(np.uint16))
    sheet, lay = compare_paths(str(tmp_path / "a.png"), str(tmp_path / "b.png"), host=qc_host, crops=0,
                               panel_width=128)
    assert set(lay.boxes) == {"still.a", "still.b", "still.wipe", "still.diff"}
    diff = _panel(sheet, lay.boxes["still.diff"]).astype(int)
    assert np.abs(diff[:, :60] - 128).max() <= 2 and (diff[:, 70:] - 128).min() > 80  # +0.1 x4 = +0.4


def test_contact_sheet_marks_flagged_frames(qc_host, clean_render):
    sheet, lay = contact_sheet(str(clean_render), host=qc_host, count=6, columns=3, thumb_width=96,
                               flags={1008: ["flicker"]})
    assert sorted(lay.boxes) == ["1001", "1003", "1005", "1008", "1010", "1012"]
    assert lay.boxes["1001"][1] == lay.boxes["1005"][1] < lay.boxes["1008"][1]  # 3 per row
    import cv2

    rgb = cv2.imread(str(frame_path(clean_render, 1003)), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    np.testing.assert_array_equal(_panel(sheet, lay.boxes["1003"]), draw.fit_into(draw.to_display(rgb), 96))
    x, y, w, _h = lay.boxes["1008"]
    assert (sheet[y + 1, x + 5:x + w - 5] == (214, 39, 40)).all()  # red border on the flagged one
    x, y, w, _ = lay.boxes["1010"]
    assert not (sheet[y + 1, x + 5:x + w - 5] == (214, 39, 40)).all(-1).any()


# ---------------------------------------------------------------- HTML


def test_html_links_resolve_and_values_are_escaped(qc_host, render_copy, tmp_path):
    shift_brightness(render_copy, [1004], 0.05)
    res = run_qc(str(render_copy), host=qc_host, out_dir=str(tmp_path / "qc"), sheets=1, contact=4)
    page = (tmp_path / "qc" / "index.html").read_text()
    import re

    targets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "report.json" in targets and any(t.endswith("f.manifest.json") for t in targets)
    for t in targets:
        assert (tmp_path / "qc" / t).is_file(), t
    for png in ("flicker.png", "drift.png", "detail.png", "contact.png", "frame.1004.png"):
        assert f'src="{png}"' in page
    assert "--frames 1004" in page
    # The tables: every chunk and seam, and the flagged frame highlighted.
    for c in ("1001-1004", "1005-1008", "1009-1012"):
        assert f"<td>{c}</td>" in page
    flagged_rows = re.findall(r"<tr class=flag><td>([^<]*)</td>", page)
    assert flagged_rows == ["1001-1004", "1004"]  # its chunk, and the frame
    from cinescale_post.qc.html import render_html

    rep = dict(res.report, setup=dict(res.report["setup"], output="<b>x&y</b>.mov", manifest=None))
    html = render_html(rep, tmp_path, [("a <caption>", str(tmp_path / "qc" / "drift.png"))])
    assert "<b>x" not in html and "&lt;b&gt;x&amp;y&lt;/b&gt;.mov" in html and "a &lt;caption&gt;" in html


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="headless Chromium is not installed")
def test_html_renders_in_headless_chromium(qc_host, render_copy, tmp_path):
    shift_brightness(render_copy, [1004], 0.05)
    res = run_qc(str(render_copy), host=qc_host, out_dir=str(tmp_path / "qc"), sheets=0, contact=0)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1400", f"--screenshot={shot}",
           f"file://{res.files['html']}"]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    img = draw.read_png(shot)
    assert img.shape[:2] == (1400, 1100)
    # The plots were loaded: their blue series and red flag markers are on screen
    # (nothing else on the page is drawn in those colours).
    blue = (np.abs(img.astype(int) - plots.BLUE).max(-1) <= 12).sum()
    red = (np.abs(img.astype(int) - plots.RED).max(-1) <= 12).sum()
    assert blue > 500 and red > 50
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
