"""Drawing helpers shared by plots and sheets: display conversion, labels,
panels on a canvas with their positions recorded, and atomic PNG writing.

Everything is drawn with OpenCV (already a dependency) rather than
matplotlib: the same code runs on every farm node, needs no font files, and
puts each panel at a position the caller knows -- the tests and the HTML page
rely on that. Images here are (H, W, 3) uint8 *RGB*; only :func:`write_png`
swaps to OpenCV's BGR.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cinescale_post.contracts.errors import OutputError

FONT_SCALE = 0.45
LINE_H = 18  # pixels per text line at FONT_SCALE
BG = (24, 24, 24)
FG = (235, 235, 235)
GAP = 8


def to_display(rgb: np.ndarray, *, linear: bool = False) -> np.ndarray:
    """(H, W, 3) float -> (H, W, 3) uint8 for viewing.

    Display-referred values are clipped to [0, 1]; scene-linear values
    (``linear``, e.g. EXR) get the sRGB curve first so midtones are not dark.
    """
    v = np.clip(np.nan_to_num(np.asarray(rgb, np.float32)), 0.0, 1.0)
    if linear:
        v = np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)
    return (v * 255.0 + 0.5).astype(np.uint8)


def fit_into(img: np.ndarray, width: int) -> np.ndarray:
    """Resize a uint8 image to ``width`` keeping its aspect: area when
    shrinking, nearest when enlarging (pixels stay honest, no made-up detail)."""
    import cv2

    h, w = img.shape[:2]
    if w == width:
        return img
    height = max(1, round(h * width / w))
    interp = cv2.INTER_AREA if width < w else cv2.INTER_NEAREST
    return cv2.resize(img, (width, height), interpolation=interp)


def text(img: np.ndarray, s: str, org: tuple[int, int], colour=FG, scale: float = FONT_SCALE) -> None:
    """Draw ``s`` with its baseline-left at ``org`` (in place)."""
    import cv2

    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def text_width(s: str, scale: float = FONT_SCALE) -> int:
    import cv2

    return cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


class Canvas:
    """Panels placed on a dark background; ``boxes[name] = (x, y, w, h)``
    records where each panel's pixels went (labels sit above the box)."""

    def __init__(self, width: int, height: int):
        self.img = np.empty((height, width, 3), np.uint8)
        self.img[:] = BG
        self.boxes: dict[str, tuple[int, int, int, int]] = {}

    def paste(self, name: str, panel: np.ndarray, x: int, y: int, label: str | None = None) -> tuple:
        h, w = panel.shape[:2]
        self.img[y:y + h, x:x + w] = panel
        if label:
            text(self.img, label, (x, y - 5))
        self.boxes[name] = (x, y, w, h)
        return self.boxes[name]

    def rect(self, box: tuple[int, int, int, int], colour, thickness: int = 1) -> None:
        import cv2

        x, y, w, h = box
        cv2.rectangle(self.img, (x, y), (x + w - 1, y + h - 1), colour, thickness)


def encode_png(img: np.ndarray) -> bytes:
    import cv2

    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | os.PathLike, img: np.ndarray) -> str:
    """Write an RGB uint8 image as PNG, atomically (temporary name + rename)."""
    path = Path(path)
    data = encode_png(img)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}",
                          fix="check free space and permissions of the folder, or pass another -o") from exc
    return str(path)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read back a PNG written by :func:`write_png` as RGB uint8 (for tests and tools)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read {path}")
    return img[..., ::-1].copy()
