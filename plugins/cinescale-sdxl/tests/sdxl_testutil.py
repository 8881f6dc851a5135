"""Helpers shared by the SDXL plugin's tests (a uniquely named module, so
test folders of several plugins can be collected in one pytest run)."""

import numpy as np


TINY_STAGES = (
    {"scale": 1, "steps": 3, "guidance": 5.0},
    {"scale": 2, "steps": 3, "restart_step": 1, "dilate_tau": 2, "guidance": 5.0},
)


def driver():
    """A fresh core render driver around the SDXL adapter (what a render gets)."""
    from cinescale_post.testing import adapter_driver
    from cinescale_sdxl.backend import SDXLAdapter

    return adapter_driver(SDXLAdapter())


def make_plan(model, *, stages=TINY_STAGES, options=None, mode="generate", size=(128, 128), dtype="float32",
              prompt="a photo of the cat", frames=(1001,), source=None):
    from cinescale_post.testing import make_test_plan

    return make_test_plan(driver(), model=model, stages=stages, options=options, size=size, mode=mode, prompt=prompt,
                          dtype=dtype, frames=frames, source=source)


def seed_for(number, tile=0):
    return 1000 + 31 * int(number) + tile


def frames_of(images, first=1001):
    from cinescale_post.contracts.media import Frame

    return [Frame(number=first + i, index=i, rgb=im) for i, im in enumerate(images)]


def still(seed=0, size=(64, 64)):
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    base = np.stack([x, y, 0.5 * (x + y)], -1)
    return (0.8 * base + 0.2 * g.random((size[1], size[0], 3))).astype(np.float32)


def render_exr(src, out, *extra, channels="RGB"):
    """``cinescale render SRC -o OUT EXTRA...`` in a subprocess (the real CLI and
    entry point); the first frame's ``channels`` as float32."""
    import subprocess
    import sys

    import OpenEXR

    r = subprocess.run([sys.executable, "-m", "cinescale_post", "render", str(src), "-o", str(out), *extra,
                        "--progress", "none"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with OpenEXR.File(str(out).replace("####", "1001")) as f:
        return np.asarray(f.channels()[channels].pixels, np.float32)
