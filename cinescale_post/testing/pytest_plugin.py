"""The test kit as a pytest plugin (entry point ``pytest11: cinescale_post``).

Installed with cinescale-post, so a plugin author's tests get these fixtures
without a conftest::

    def test_my_adapter(cinescale_host, cinescale_clip):
        clip = cinescale_clip("plate.mov", frames=3, size=(64, 48))
        backend = cinescale_host(my_plugin).backend("my-model")

Fixtures:

``cinescale_host``      ``cinescale_host(*plugins)`` -> a fresh, isolated
                        :class:`~cinescale_post.pipeline.host.Host` with the built-ins,
                        the kit's deterministic test backends and ``plugins``
                        (installed entry points are not loaded).
``cinescale_clip``      ``cinescale_clip(name, **kw)`` -> a movie with known
                        pixels in the test's temporary folder
                        (:func:`cinescale_post.testing.make_clip`).
``cinescale_sequence``  ``cinescale_sequence(pattern, numbers, **kw)`` -> an image sequence
                        (:func:`cinescale_post.testing.make_sequence`).

Importing this module imports neither torch nor the media libraries: pytest
loads it in every run of the environment.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def cinescale_host():
    def make(*plugins):
        from cinescale_post.testing import fresh_host
        import cinescale_post.testing.backends as backends

        return fresh_host(backends, *plugins)

    return make


@pytest.fixture
def cinescale_clip(tmp_path):
    def make(name: str = "clip.mov", **kw):
        from cinescale_post.testing import make_clip

        return make_clip(tmp_path / name, **kw)

    return make


@pytest.fixture
def cinescale_sequence(tmp_path):
    def make(pattern: str = "seq/f.####.exr", numbers=range(1001, 1004), **kw):
        from cinescale_post.testing import make_sequence

        return make_sequence(tmp_path / pattern, numbers, **kw)

    return make
