"""Line plots of a QC report as PNG: flicker, colour drift, detail gain.

Drawn with OpenCV (see ``draw``): frame numbers along x, the metric along y,
the threshold as a dashed red line, chunk boundaries as light vertical
lines (flagged seams in orange), flagged frames as red dots. Each plot
returns its :class:`Axes` so callers and tests know where a value is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import cinescale_post.qc.draw as draw

BLUE = (31, 119, 180)
GREY = (150, 150, 150)
RED = (214, 39, 40)
ORANGE = (255, 127, 14)
PURPLE = (148, 103, 189)
GRID = (70, 70, 70)
BOUNDARY = (110, 110, 110)
PLOT_BG = (16, 16, 16)

SIZE = (960, 280)
MARGIN = (64, 16, 34, 34)  # left, right, top, bottom


@dataclass(frozen=True)
class Axes:
    """The data area: ``box`` = (x, y, w, h) in pixels; data ranges x0..x1, y0..y1."""

    box: tuple[int, int, int, int]
    x0: float
    x1: float
    y0: float
    y1: float

    def x_px(self, x: float) -> int:
        bx, _, bw, _ = self.box
        span = (self.x1 - self.x0) or 1.0
        return round(bx + (x - self.x0) / span * (bw - 1))

    def y_px(self, y: float) -> int:
        _, by, _, bh = self.box
        span = (self.y1 - self.y0) or 1.0
        y = min(max(y, self.y0), self.y1)  # values beyond the range sit on the edge
        return round(by + bh - 1 - (y - self.y0) / span * (bh - 1))


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for f in (1, 2, 2.5, 5, 10):
        if f * e >= v:
            return f * e
    return 10 * e


def _dashed_h(img, x0, x1, y, colour, dash=8) -> None:
    import cv2

    for x in range(x0, x1, dash * 2):
        cv2.line(img, (x, y), (min(x + dash, x1), y), colour, 1)


def line_plot(title: str, xs: list[int], series: list[tuple[str, list, tuple]], *,
              thresholds: list[tuple[str, float]] = (), boundaries: list[int] = (),
              seams: list[int] = (), flagged: list[tuple[int, float]] = (),
              y_min: float = 0.0, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, Axes]:
    """Draw series over frame numbers: -> ((H, W, 3) uint8 RGB, Axes).

    ``series``: (label, values (None = gap), colour); ``thresholds``: (label,
    value); ``boundaries``: frame numbers where a chunk starts (line drawn just
    before them); ``seams``: the boundaries that were flagged; ``flagged``:
    (frame, value) points marked in red.
    """
    import cv2

    w, h = size
    ml, mr, mt, mb = MARGIN
    img = np.empty((h, w, 3), np.uint8)
    img[:] = draw.BG
    vals = [v for _, ys, _ in series for v in ys if v is not None and math.isfinite(v)]
    vals += [v for _, v in thresholds]
    ax = Axes((ml, mt, w - ml - mr, h - mt - mb), float(min(xs, default=0)) - 0.5,
              float(max(xs, default=1)) + 0.5, y_min, _nice_max(max(vals, default=1.0) * 1.1))
    bx, by, bw, bh = ax.box
    img[by:by + bh, bx:bx + bw] = PLOT_BG
    for f in (0.25, 0.5, 0.75, 1.0):  # y grid and labels
        yv = ax.y0 + f * (ax.y1 - ax.y0)
        yp = ax.y_px(yv)
        cv2.line(img, (bx, yp), (bx + bw - 1, yp), GRID, 1)
        draw.text(img, f"{yv:.3g}", (4, yp + 4), scale=0.38)
    draw.text(img, f"{ax.y0:.3g}", (4, by + bh), scale=0.38)
    step = max(1, round(len(xs) / 12)) if xs else 1
    for x in xs[::step]:  # x labels: about a dozen frame numbers
        xp = ax.x_px(x)
        cv2.line(img, (xp, by + bh), (xp, by + bh + 3), draw.FG, 1)
        s = str(x)
        draw.text(img, s, (xp - draw.text_width(s, 0.38) // 2, by + bh + 16), scale=0.38)
    for b in boundaries:
        xp = round((ax.x_px(b - 1) + ax.x_px(b)) / 2)
        cv2.line(img, (xp, by), (xp, by + bh - 1), ORANGE if b in seams else BOUNDARY, 2 if b in seams else 1)
    for label, v in thresholds:
        _dashed_h(img, bx, bx + bw - 1, ax.y_px(v), RED)
    for _, ys, colour in series:
        pts = [(ax.x_px(x), ax.y_px(v)) for x, v in zip(xs, ys) if v is not None and math.isfinite(v)]
        run = []
        for x, v in zip(xs, ys):  # break the line at gaps
            if v is None or not math.isfinite(v):
                if len(run) > 1:
                    cv2.polylines(img, [np.array(run, np.int32)], False, colour, 2, cv2.LINE_AA)
                run = []
            else:
                run.append((ax.x_px(x), ax.y_px(v)))
        if len(run) > 1:
            cv2.polylines(img, [np.array(run, np.int32)], False, colour, 2, cv2.LINE_AA)
        elif len(pts) == 1:
            cv2.circle(img, pts[0], 2, colour, -1)
    for x, v in flagged:
        cv2.circle(img, (ax.x_px(x), ax.y_px(v)), 5, RED, -1, cv2.LINE_AA)
    draw.text(img, title, (bx, 20), scale=0.5)
    lx = w - mr
    for label, _, colour in reversed(series):  # legend, right-aligned on the title line
        lx -= draw.text_width(label) + 22
        cv2.line(img, (lx, 15), (lx + 14, 15), colour, 2)
        draw.text(img, label, (lx + 18, 20))
    for label, _ in thresholds[:1]:
        lx -= draw.text_width(label) + 22
        _dashed_h(img, lx, lx + 14, 15, RED, dash=3)
        draw.text(img, label, (lx + 18, 20))
    return img, ax


def report_plots(report: dict) -> dict[str, tuple[np.ndarray, Axes]]:
    """The three plots of a QC report: ``{"flicker": ..., "drift": ..., "detail": ...}``."""
    fr = report["frames"]
    t = report["thresholds"]
    xs = [f["frame"] for f in fr]
    bounds = [c["first"] for c in report["chunks"][1:]]
    seams = [s["after"] for s in report["seams"] if s["flagged"]]

    def pick(flag: str, key: str):
        return [(f["frame"], f[key]) for f in fr if flag in f["flags"] and f[key] is not None]

    out = {}
    out["flicker"] = line_plot(
        "temporal flicker (added warping error, code values)", xs,
        [("source warp error", [f["warp_error_source"] for f in fr], GREY),
         ("flicker into frame", [f["flicker_in"] for f in fr], BLUE)],
        thresholds=[(f"threshold {t['flicker']}", t["flicker"])], boundaries=bounds, seams=seams,
        flagged=pick("flicker", "flicker"))
    out["drift"] = line_plot(
        "colour drift vs source (" + ("dE2000" if "CIEDE2000" in report["metrics"]["colour_drift"] else "dE76")
        + ")", xs,
        [("mean", [f["drift_mean"] for f in fr], BLUE), ("p95", [f["drift_p95"] for f in fr], PURPLE)],
        thresholds=[(f"thresholds {t['drift_mean']}/{t['drift_p95']}", t["drift_mean"]),
                    ("p95", t["drift_p95"])], boundaries=bounds, flagged=pick("drift", "drift_mean"))
    out["detail"] = line_plot(
        "detail gain (HF energy vs Lanczos upscale)", xs,
        [("gain", [f["detail_gain"] for f in fr], BLUE)],
        thresholds=[(f"minimum {t['detail_min']}", t["detail_min"])], boundaries=bounds,
        flagged=pick("soft", "detail_gain"))
    return out
