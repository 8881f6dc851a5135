"""Comparison sheets (A against B) and contact sheets of a render.

A comparison sheet shows, per frame: A and B side by side, a wipe (A left of
the line, B right of it), the signed difference amplified around mid grey,
and 1:1 crops of the busiest regions (most high-frequency energy in either
image), each as A | B | difference. The two images are compared at the
larger one's size: the smaller is Lanczos-scaled (letterboxed if the aspect
differs), which is what a reviewer wants for "source vs 4K render". Panels
are shrunk to fit the sheet; crops never are.

Both functions return the sheet and its layout (panel boxes), so callers and
tests know where everything is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cinescale_post.contracts.errors import UsageError
import cinescale_post.qc.draw as draw
import cinescale_post.qc.metrics as m

CROP_COLOURS = [(255, 200, 0), (0, 200, 255), (255, 80, 200), (120, 255, 120), (255, 140, 60), (180, 140, 255)]
MAX_FRAMES = 12


@dataclass
class SheetLayout:
    """Where the panels went. ``boxes``: name -> (x, y, w, h) on the sheet;
    names are ``"<block>.a"``, ``.b``, ``.wipe``, ``.diff``, ``.crop<i>.a|b|diff``
    with ``block`` the frame number (or "still"). ``crops[block]``: the crop
    regions (x, y, w, h) in compare-size pixels; ``compare_size``: (w, h)."""

    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    crops: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    compare_size: tuple[int, int] = (0, 0)
    panel_scale: float = 1.0
    wipe_x: int = 0  # column (panel pixels) of the wipe line


def _match(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``img`` (H, W, 3) into ``size`` = (w, h) with Lanczos, letterboxed
    when the aspect differs by more than a pixel."""
    w, h = size
    ih, iw = img.shape[:2]
    if (iw, ih) == (w, h):
        return np.asarray(img, np.float32)
    s = min(w / iw, h / ih)
    sw, sh = round(iw * s), round(ih * s)
    if abs(sw - w) <= 1 and abs(sh - h) <= 1:
        return m.lanczos(img, (w, h))
    out = np.zeros((h, w, 3), np.float32)
    x, y = (w - sw) // 2, (h - sh) // 2
    out[y:y + sh, x:x + sw] = m.lanczos(img, (sw, sh))
    return out


def busiest_regions(a: np.ndarray, b: np.ndarray, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` non-overlapping ``size`` x ``size`` boxes (x, y, w, h) with
    the most high-frequency luma energy in A or B, busiest first."""
    import cv2

    h, w = a.shape[:2]
    size = min(size, w, h)
    energy = np.zeros((h, w), np.float32)
    for img in (a, b):
        y = m.luma(img)
        hp = (y - cv2.GaussianBlur(y, (0, 0), 1.0)) ** 2
        energy = np.maximum(energy, hp)
    # Mean energy of the box whose top-left corner is at each pixel.
    integral = cv2.integral(energy.astype(np.float64))
    score = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size])
    boxes: list[tuple[int, int, int, int]] = []
    score = score.copy()
    while len(boxes) < n and np.isfinite(score).any() and score.max() > -np.inf:
        y0, x0 = np.unravel_index(int(np.argmax(score)), score.shape)
        boxes.append((int(x0), int(y0), size, size))
        # No later box may overlap this one.
        score[max(0, y0 - size + 1):y0 + size, max(0, x0 - size + 1):x0 + size] = -np.inf
    return boxes


def _diff(a: np.ndarray, b: np.ndarray, amplify: float) -> np.ndarray:
    return np.clip(0.5 + amplify * (b - a), 0.0, 1.0)


def compare_block(canvas: draw.Canvas | None, layout: SheetLayout, block: str, a: np.ndarray, b: np.ndarray, *,
                  labels: tuple[str, str], amplify: float, wipe: float, crops: int, crop_size: int,
                  panel_width: int, linear: bool, top: int = 0, title: str = "") -> tuple[int, int]:
    """Lay out (canvas None: only measure) one block; return its (width, height)."""
    if a.shape != b.shape:
        raise ValueError(f"A {a.shape} and B {b.shape} must match here (use compare_images)")
    h, w = a.shape[:2]
    pw = panel_width  # small images are enlarged (nearest), big ones shrunk
    s = pw / w
    ph = max(1, round(h * s))
    cs = min(crop_size, w, h)
    regions = busiest_regions(a, b, crops, cs) if crops else []
    head = draw.LINE_H + 6
    row1, row2 = top + head + draw.LINE_H, top + head + 2 * draw.LINE_H + ph + draw.GAP
    crop_top = row2 + ph + draw.GAP + draw.LINE_H
    crop_label = f"#9 at {w},{h}, 1:1: {labels[0]} | {labels[1]} | difference"
    diff_label = f"{labels[1]} - {labels[0]} x{amplify:g} (grey = same)"
    width = max(2 * pw + 3 * draw.GAP, 3 * cs + 4 * draw.GAP, draw.text_width(crop_label) + 2 * draw.GAP,
                pw + 3 * draw.GAP + draw.text_width(diff_label))
    height = crop_top - top + len(regions) * (cs + draw.GAP + draw.LINE_H)
    if canvas is None:
        return width, height
    layout.panel_scale = s
    layout.compare_size = (w, h)
    layout.crops[block] = regions
    da, db = draw.to_display(a, linear=linear), draw.to_display(b, linear=linear)
    dd = draw.to_display(_diff(a, b, amplify))  # the difference is not an image: no view curve
    cut = round(wipe * w)
    dw = np.concatenate([da[:, :cut], db[:, cut:]], axis=1)
    x0, x1 = draw.GAP, 2 * draw.GAP + pw
    if title:
        draw.text(canvas.img, title, (draw.GAP, top + draw.LINE_H), scale=0.55)
    canvas.paste(f"{block}.a", draw.fit_into(da, pw), x0, row1, labels[0])
    canvas.paste(f"{block}.b", draw.fit_into(db, pw), x1, row1, labels[1])
    canvas.paste(f"{block}.wipe", draw.fit_into(dw, pw), x0, row2, f"wipe: {labels[0]} | {labels[1]}")
    canvas.paste(f"{block}.diff", draw.fit_into(dd, pw), x1, row2, diff_label)
    layout.wipe_x = round(cut * s)
    import cv2

    wx = x0 + layout.wipe_x
    cv2.line(canvas.img, (wx, row2), (wx, row2 + ph - 1), (255, 255, 255), 1)
    bxp, byp = x1, row1
    for i, (cx, cy, cw, ch) in enumerate(regions):
        colour = CROP_COLOURS[i % len(CROP_COLOURS)]
        # Outline on B's panel: where each crop comes from.
        canvas.rect((bxp + int(cx * s), byp + int(cy * s), max(2, int(cw * s)), max(2, int(ch * s))), colour)
        y = crop_top + i * (cs + draw.GAP + draw.LINE_H)
        sl = (slice(cy, cy + ch), slice(cx, cx + cw))
        draw.text(canvas.img, f"#{i + 1} at {cx},{cy}, 1:1: {labels[0]} | {labels[1]} | difference",
                  (draw.GAP, y - 5), colour)
        canvas.paste(f"{block}.crop{i}.a", da[sl], draw.GAP, y)
        canvas.paste(f"{block}.crop{i}.b", db[sl], 2 * draw.GAP + cs, y)
        canvas.paste(f"{block}.crop{i}.diff", dd[sl], 3 * draw.GAP + 2 * cs, y)
        canvas.rect((draw.GAP - 2, y - 2, cw + 4, ch + 4), colour, 1)
    return width, height


def compare_images(pairs: list[tuple[str, np.ndarray, np.ndarray]], *, labels=("A", "B"), amplify: float = 4.0,
                   wipe: float = 0.5, crops: int = 3, crop_size: int = 128, panel_width: int = 480,
                   linear: bool = False) -> tuple[np.ndarray, SheetLayout]:
    """Build a sheet: one block per (block name, A, B) pair, stacked vertically.

    A and B are (H, W, 3) float arrays of any sizes. Returns ((H, W, 3) uint8
    RGB sheet, layout).
    """
    if not pairs:
        raise UsageError("nothing to compare")
    if not 0.0 <= wipe <= 1.0:
        raise UsageError(f"--wipe {wipe}: must be between 0 and 1", fix="0.5 puts the line in the middle")
    if amplify <= 0 or crops < 0 or crop_size < 8 or panel_width < 64:
        raise UsageError(f"amplify {amplify}, crops {crops}, crop size {crop_size}, panel width {panel_width}: "
                         "need amplify > 0, crops >= 0, crop size >= 8, panel width >= 64")
    matched = []
    for name, a, b in pairs:
        ha, wa = a.shape[:2]
        hb, wb = b.shape[:2]
        size = (wa, ha) if wa * ha >= wb * hb else (wb, hb)
        la = labels[0] + ("" if (wa, ha) == size else f" (Lanczos {min(size[0] / wa, size[1] / ha):.2f}x)")
        lb = labels[1] + ("" if (wb, hb) == size else f" (Lanczos {min(size[0] / wb, size[1] / hb):.2f}x)")
        matched.append((name, _match(a, size), _match(b, size), (la, lb)))
    kw = {"amplify": amplify, "wipe": wipe, "crops": crops, "crop_size": crop_size, "panel_width": panel_width,
          "linear": linear}
    dims = [compare_block(None, SheetLayout(), n, a, b, labels=lab, **kw) for n, a, b, lab in matched]
    canvas = draw.Canvas(max(w for w, _ in dims), sum(h for _, h in dims) + draw.GAP)
    layout = SheetLayout()
    top = 0
    for (name, a, b, lab), (_, bh) in zip(matched, dims):
        title = "" if name == "still" else f"frame {name}"
        compare_block(canvas, layout, name, a, b, labels=lab, top=top, title=title, **kw)
        top += bh
    layout.boxes = canvas.boxes
    return canvas.img, layout


# ---------------------------------------------------------------- media


def read_frames(path: str, numbers: list[int] | None, *, host, first_frame: int = 1001):
    """({number: rgb}, SourceInfo) for ``numbers`` (None: the middle frame;
    a still gives its one image whatever is asked). Unknown numbers raise
    UsageError listing what exists."""
    from cinescale_post.media.probe import open_input
    from cinescale_post.media.sequence import compress_ranges

    with open_input(path, first_frame=first_frame, host=host) as r:
        have = r.info.frame_numbers
        if numbers is None or r.info.kind == "image":
            numbers = [have[len(have) // 2]]
        missing = sorted(set(numbers) - set(have))
        if missing:
            raise UsageError(f"{path} has no frame {compress_ranges(missing)} (it has {compress_ranges(list(have))})",
                             fix="choose frames inside that range with --frame (movies: see --first-frame)")
        return {f.number: f.rgb for f in r.read(sorted(set(numbers)))}, r.info


def compare_paths(a: str, b: str, *, host, frames: list[int] | None = None, first_frame: int = 1001,
                  **kw) -> tuple[np.ndarray, SheetLayout]:
    """Compare two stills, or chosen frames of two clips/sequences (default:
    the middle frame). A still against a clip is compared with each chosen
    frame of the clip (a graded reference frame against a render, say)."""
    from cinescale_post.media.probe import probe

    if frames and len(frames) > MAX_FRAMES:
        raise UsageError(f"{len(frames)} frames: a sheet holds at most {MAX_FRAMES}", fix="make several sheets")
    ia = probe(a, first_frame=first_frame, host=host)
    ib = probe(b, first_frame=first_frame, host=host)
    clip = ia if ia.kind != "image" else ib
    if not frames and clip.kind != "image":
        frames = [clip.frame_numbers[len(clip.frame_numbers) // 2]]
    fa, _ = read_frames(a, frames, host=host, first_frame=first_frame)
    fb, _ = read_frames(b, frames, host=host, first_frame=first_frame)
    if clip.kind == "image":
        pairs = [("still", next(iter(fa.values())), next(iter(fb.values())))]
    else:
        pairs = [(str(n), fa.get(n, next(iter(fa.values()))), fb.get(n, next(iter(fb.values()))))
                 for n in sorted(set(frames))]
    linear = ia.colour.trc == 8 or ib.colour.trc == 8
    return compare_images(pairs, linear=linear, **kw)


def contact_sheet(path: str, *, host, count: int = 12, frames: list[int] | None = None, columns: int = 4,
                  thumb_width: int = 320, first_frame: int = 1001, flags: dict[int, list[str]] | None = None
                  ) -> tuple[np.ndarray, SheetLayout]:
    """Thumbnails of ``count`` evenly spaced frames (or ``frames``), labelled
    with their numbers; frames in ``flags`` get a red border and the reasons."""
    from cinescale_post.media.probe import open_input

    if count < 1 or columns < 1 or thumb_width < 32:
        raise UsageError(f"count {count}, columns {columns}, width {thumb_width}: need count >= 1, "
                         "columns >= 1, width >= 32")
    flags = flags or {}
    with open_input(path, first_frame=first_frame, host=host) as r:
        have = r.info.frame_numbers
        if frames is None:
            idx = np.unique(np.linspace(0, len(have) - 1, min(count, len(have))).round().astype(int))
            frames = [have[i] for i in idx]
        bad = sorted(set(frames) - set(have))
        if bad:
            raise UsageError(f"{path} has no frame {bad[0]}", fix=f"it has {have[0]}-{have[-1]}")
        linear = r.info.colour.trc == 8
        thumbs = {f.number: draw.fit_into(draw.to_display(f.rgb, linear=linear), thumb_width)
                  for f in r.read(sorted(frames))}
    th = max(t.shape[0] for t in thumbs.values())
    cols = min(columns, len(thumbs))
    rows = -(-len(thumbs) // cols)
    cell_h = th + draw.LINE_H + draw.GAP
    canvas = draw.Canvas(cols * (thumb_width + draw.GAP) + draw.GAP,
                         draw.LINE_H + 8 + rows * (cell_h + draw.LINE_H) + draw.GAP)
    draw.text(canvas.img, f"{path}  ({len(thumbs)} of {len(have)} frames)", (draw.GAP, draw.LINE_H), scale=0.5)
    for i, n in enumerate(sorted(thumbs)):
        r_, c = divmod(i, cols)
        x = draw.GAP + c * (thumb_width + draw.GAP)
        y = draw.LINE_H + 8 + draw.LINE_H + r_ * (cell_h + draw.LINE_H)
        why = flags.get(n)
        label = f"{n}" + (f"  {', '.join(why)}" if why else "")
        canvas.paste(str(n), thumbs[n], x, y, label)
        if why:
            bx, by, bw, bh = canvas.boxes[str(n)]
            canvas.rect((bx, by, bw, bh), (214, 39, 40), 3)
    layout = SheetLayout(boxes=canvas.boxes)
    return canvas.img, layout
