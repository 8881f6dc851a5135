"""Shared fixtures: a fresh host with the test backends, tiny clips."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("CINESCALE_TEST_DEVICE", "cpu"),
                     help="device for model tests (cpu, cuda)")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture
def device(request):
    return request.config.getoption("--device")


@pytest.fixture
def host():
    """A fresh host: built-ins + the deterministic test backends, no entry points."""
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=False, extra_plugins=(tb,))


@pytest.fixture(scope="module")
def env():
    """The environment of a `cinescale` subprocess that loads the built-ins only (no entry points)."""
    from tests.helpers import cli_env

    return cli_env(CINESCALE_LOAD_PLUGINS="")
