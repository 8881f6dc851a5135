"""OOM back-off: a window that runs out of memory is rendered again with the
backend's next cheaper setting; the smallest failing setting exits 5."""

import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import OutOfMemoryError
from cinescale_post.orchestrator.oom_backoff import is_oom
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip

from ..helpers import recorder, tree_bytes, write_preset


class FakeCudaOOM(RuntimeError):
    pass


FakeCudaOOM.__name__ = "OutOfMemoryError"


def _backend(host, fail_until_level, levels=("tiles 512", "tiles 256", "cpu offload")):
    b = host.backend("test-noise")
    state = {"level": 0, "calls": 0}
    real = type(b).render

    def render(job):
        state["calls"] += 1
        if state["level"] < fail_until_level:
            raise FakeCudaOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(b, job)

    def reduce_memory():
        if state["level"] >= len(levels):
            return None
        state["level"] += 1
        return levels[state["level"] - 1]

    b.render = render
    b.reduce_memory = reduce_memory
    return b, state


def test_is_oom():
    assert is_oom(FakeCudaOOM("x")) and is_oom(MemoryError()) and is_oom(RuntimeError("CUDA out of memory"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))


def test_backoff_retries_and_pixels_match_an_unconstrained_render(tmp_path, host):
    clip = make_clip(tmp_path / "in.mov", frames=3)
    preset = write_preset(tmp_path / "p.toml", backend="test-noise")
    ref = tmp_path / "ref" / "f.####.exr"
    run(plan_mod.build(str(preset), host=host, input=str(clip), output=str(ref)), host, recorder())
    b, state = _backend(host, fail_until_level=2)
    sink = recorder()
    out = tmp_path / "oom" / "f.####.exr"
    run(plan_mod.build(str(preset), host=host, input=str(clip), output=str(out)), host, sink)
    assert state["level"] == 2
    msgs = [w["message"] for w in sink.names("warning")]
    assert any("tiles 512" in m for m in msgs) and any("tiles 256" in m for m in msgs)
    assert tree_bytes(tmp_path / "oom", "*.exr") == tree_bytes(tmp_path / "ref", "*.exr")


def test_smallest_setting_failing_exits_5_with_numbers(tmp_path, host):
    clip = make_clip(tmp_path / "in.mov", frames=2)
    preset = write_preset(tmp_path / "p.toml", backend="test-noise")
    _backend(host, fail_until_level=99)
    with pytest.raises(OutOfMemoryError) as e:
        run(plan_mod.build(str(preset), host=host, input=str(clip), output=str(tmp_path / "f.####.exr")), host,
            recorder())
    assert e.value.exit_code == 5
    assert "3 back-off step(s)" in str(e.value) and "cpu offload" in str(e.value)
    assert not list(tmp_path.glob("f.*.exr"))
