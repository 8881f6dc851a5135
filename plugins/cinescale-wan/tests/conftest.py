import os
import sys
from pathlib import Path
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# `import wan_helpers` from the tests under any --import-mode (the root config uses importlib)
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # run from a checkout without `pip install -e plugins/cinescale-wan`
    import cinescale_wan  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Tiny Wan folders saved once per session: t2v (with a T5 text encoder),
    i2v (CLIP image encoder), a14b (two experts), ti2v (Wan 2.2 5B layout)."""
    from cinescale_wan.tiny import save_tiny_wan

    root = tmp_path_factory.mktemp("wan-models")
    return {layout: str(save_tiny_wan(root / f"tiny-wan-{layout}", layout=layout)) for layout in ("t2v", "i2v", "a14b", "ti2v")}


@pytest.fixture(scope="session")
def tiny_model(models):
    return models["t2v"]


