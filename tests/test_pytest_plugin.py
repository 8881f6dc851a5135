"""The test kit reaches plugin authors as a pytest plugin (issue 13): the
fixtures below come from the ``pytest11`` entry point, not from a conftest."""

import importlib.metadata as md

import numpy as np


def test_the_kit_is_a_registered_pytest_plugin(pytestconfig):
    eps = [e for e in md.entry_points(group="pytest11") if e.name == "cinescale_post"]
    assert eps and eps[0].value == "cinescale_post.testing.pytest_plugin"
    assert pytestconfig.pluginmanager.has_plugin("cinescale_post")


def test_fixtures_build_media_and_hosts(cinescale_host, cinescale_clip, cinescale_sequence):
    from cinescale_post.media.probe import probe
    from cinescale_post.testing import clip_rgb

    host = cinescale_host()
    assert "draft" in host.backends() and "test-identity" in host.backends()
    clip = cinescale_clip("plate.mov", frames=3, size=(64, 48))
    assert probe(str(clip), host=host).frame_count == 3
    files = cinescale_sequence("seq/f.####.exr", numbers=range(1001, 1003))
    assert [f.name for f in files] == ["f.1001.exr", "f.1002.exr"]
    assert np.asarray(clip_rgb("index", 0, (64, 48))).shape == (48, 64, 3)


def test_the_demo_clip_command_runs(tmp_path):
    """scripts/demo.sh makes its sample with ``python -m cinescale_post.testing sample``."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cinescale_post.testing", "sample", str(tmp_path / "s.mov")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.mov").stat().st_size > 0
