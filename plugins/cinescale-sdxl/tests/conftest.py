import sys
from pathlib import Path

import pytest
import torch

try:  # run from a checkout without `pip install -e plugins/cinescale-sdxl`
    import cinescale_sdxl  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sdxl_testutil


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from cinescale_sdxl.tiny import save_tiny_sdxl

    return str(save_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl"))
