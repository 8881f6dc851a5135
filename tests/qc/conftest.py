"""Fixtures for QC tests: a textured moving clip, a clean draft render of it
(PNG16 frames, chunks of 4, real manifest), and helpers to plant defects."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from cinescale_post.testing import make_clip

from ..helpers import write_preset

FRAMES = 12
SRC_SIZE = (64, 48)
OUT_SIZE = (128, 96)
CHUNK = 4


@functools.lru_cache(maxsize=4)
def _texture(w: int, h: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(5)
    tex = cv2.GaussianBlur(rng.random((2 * h, 2 * w, 3)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def moving_texture(i: int, size: tuple[int, int]) -> np.ndarray:
    """A smooth random texture panning 1 px right and 1/2 px down per frame:
    real motion for optical flow (a plain ramp would be ambiguous)."""
    w, h = size
    tex = _texture(w, h)
    return np.ascontiguousarray(tex[i // 2 + 4: i // 2 + 4 + h, i + 4: i + 4 + w])


def render(host, tmp: Path, clip: Path, *, codec: str = "png16", size=OUT_SIZE, fit: str = "pad",
           name: str = "out/f.####.png") -> Path:
    """Draft (Lanczos) render of ``clip``: the clean reference a QC run must pass."""
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import NullSink
    from cinescale_post.orchestrator.render_job import run

    preset = write_preset(tmp / f"p-{codec}.toml", codec=codec, chunk=CHUNK, width=size[0], height=size[1], fit=fit,
                          audio=False)
    out = tmp / name
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(out))
    run(p, host, NullSink())
    return out


@pytest.fixture(scope="session")
def qc_host():
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=False, extra_plugins=(tb,))


@pytest.fixture(scope="session")
def source_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qc-src")
    return make_clip(d / "in.mov", frames=FRAMES, size=SRC_SIZE, content=moving_texture)


@pytest.fixture(scope="session")
def clean_render(tmp_path_factory, qc_host, source_clip) -> Path:
    return render(qc_host, tmp_path_factory.mktemp("qc-clean"), source_clip)


@pytest.fixture
def render_copy(tmp_path, clean_render) -> Path:
    """A private copy of the clean render (frames + manifest) to plant defects in."""
    src_dir = clean_render.parent
    dst_dir = tmp_path / "out"
    shutil.copytree(src_dir, dst_dir, ignore=shutil.ignore_patterns("*.qc"))
    out = dst_dir / clean_render.name
    # The manifest sits next to the frames (out/f.manifest.json); copied above.
    return out


def frame_path(pattern: Path, number: int) -> Path:
    return Path(str(pattern).replace("####", f"{number:04d}"))


def shift_brightness(pattern: Path, numbers, amount: float) -> None:
    """Add ``amount`` (code values) to every channel of frames ``numbers``
    of a PNG16 render, in place."""
    import cv2

    for n in numbers:
        p = str(frame_path(pattern, n))
        a = cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.float64)
        cv2.imwrite(p, np.clip(a + amount * 65535.0, 0, 65535).astype(np.uint16))
