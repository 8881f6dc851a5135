"""Farm-grade scheduling (issue 14): messages that name working commands, a
sink with only ``emit``, every window rendered once for any chunking."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cinescale_post import plan as plan_mod
from cinescale_post.errors import InputError, OutOfMemoryError
from cinescale_post.hookspecs import hookimpl
from cinescale_post.orchestrator.memory import render_with_backoff
from cinescale_post.orchestrator.run import run
from cinescale_post.testing import make_clip
from cinescale_post.testing_backends import NoiseBackend

from ..helpers import recorder, write_preset


class _EmitOnly:
    """All the progress protocol requires: ``emit``."""

    def __init__(self):
        self.events = []

    def emit(self, event, **fields):
        self.events.append((event, fields))


class _Broken(NoiseBackend):
    id = "test-broken"

    def render(self, job):
        raise InputError("frame 1003 cannot be decoded", fix="re-export the plate")


class _AlwaysOOM(NoiseBackend):
    id = "test-oom"

    def render(self, job):
        raise MemoryError("CUDA out of memory")


class _Plugin:
    @hookimpl
    def register_backends(self, register):
        register(_Broken())
        register(_AlwaysOOM())


@pytest.fixture
def host():
    import cinescale_post.testing_backends as tb
    from cinescale_post.host import Host

    return Host(load_entrypoints=False, extra_plugins=(tb, _Plugin()))


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "in.mov", frames=6, size=(32, 24), content="index", audio=None)


def test_sink_with_only_emit_sees_the_real_error(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", backend="test-broken", codec="exr", width=32, height=24)
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "o" / "f.####.exr"))
    sink = _EmitOnly()
    with pytest.raises(InputError, match="cannot be decoded"):
        run(p, host, sink)
    finished = [f for e, f in sink.events if e == "finished"]
    assert finished and finished[0]["status"] == "failed" and finished[0]["done"] == 0


def test_out_of_memory_message_names_flags_that_work(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", backend="test-oom", codec="exr", width=32, height=24)
    with pytest.raises(OutOfMemoryError) as info:
        render_with_backoff(_AlwaysOOM(), None, warn=lambda m: None, where="frames 1-2")
    assert info.value.exit_code == 5
    fix = info.value.fix
    assert "--set dtype=float16" in fix and "--dtype" not in fix
    # every --set the message suggests is accepted by plan.build (values filled in)
    sets = re.findall(r"--set ([\w.]+)=(\S+?)\)?(?:,|$| )", fix)
    assert {k for k, _ in sets} >= {"dtype", "output.width", "output.height", "window.size"}
    fill = {"dtype": "float16", "output.width": "64", "output.height": "48", "window.size": "1"}
    p = plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "o" / "f.####.exr"),
                       overrides=tuple(f"{k}={fill[k]}" for k, _ in sets))
    assert p.dtype == "float16" and (p.output.width, p.output.height) == (64, 48)
