"""Farm-grade scheduling (issue 14): messages that name working commands, a
sink with only ``emit``, every window rendered once for any chunking."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import InputError, OutOfMemoryError
from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.orchestrator.oom_backoff import render_with_backoff
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip
from cinescale_post.testing.backends import NoiseBackend, TemporalNoiseBackend

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


class _MemoryTemporal(TemporalNoiseBackend):
    """test-temporal with a memory model: 1 GiB transformer + 1 GiB text
    encoder, VAE working set by tile (None 2 GiB, 512 px 1, 256 px 0.5), so
    the free-memory figure (CINESCALE_FREE_MEMORY) picks the VAE tile, the
    window and the offload; the tile changes pixels (as a tiled decode does)."""

    id = "test-memory"

    def estimate_memory(self, plan):
        import cinescale_post.ops.memory_estimate as mm

        g = mm.GiB
        comps = [mm.Component("transformer", g, g // 8), mm.Component("text_encoder", g, g // 8)]
        vae = {None: 2 * g, 512: g, 256: g // 2}
        stage = mm.StageDemand("stage 0", (plan.output.width, plan.output.height),
                               denoise=lambda n: n * g // 20, vae=lambda tile, n: vae[tile])
        free, _ = mm.free_memory(plan.device)
        res = mm.plan_memory(comps, [stage], free, denoisers=("transformer",), tiles=[None, 512, 256],
                             windows=sorted({plan.window.size, 5}, reverse=True), offloads=("none", "model"))
        res.update(available=True, device=str(plan.device))
        return res

    def apply_memory_choice(self, choice):
        self.tile, self.offload = choice.get("vae_tile"), choice.get("offload")
        return None

    def render(self, job):
        outs = super().render(job)
        tile = getattr(self, "tile", None)
        return [np.round(o * tile) / np.float32(tile) for o in outs] if tile else outs


class _Plugin:
    @hookimpl
    def register_backends(self, register):
        register(_Broken())
        register(_AlwaysOOM())
        register(_MemoryTemporal())


@pytest.fixture
def host():
    import cinescale_post.testing.backends as tb
    from cinescale_post.pipeline.host import Host

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
    assert (p.output.width, p.output.height) == (64, 48)  # accepted (a CPU test backend may keep float32)


# ------------------------------------------------------------------ every window rendered once


def _exr_tree(folder):
    """name -> the stored channel bytes (the header carries paths and dates)."""
    import OpenEXR

    out = {}
    for p in sorted(folder.glob("*.exr")):
        with OpenEXR.File(str(p)) as f:
            ch = f.channels()
            out[p.name] = b"".join(np.ascontiguousarray(ch[k].pixels).tobytes() for k in sorted(ch))
    return out


@pytest.fixture
def clip20(tmp_path):
    return make_clip(tmp_path / "in20.mov", frames=20, size=(16, 8), content="index", audio=None)


def _temporal(tmp_path, name, chunk, codec="exr"):
    return write_preset(tmp_path / f"{name}.toml", backend="test-temporal", codec=codec, width=32, height=16,
                        window=(5, 2), chunk=chunk)


@pytest.mark.parametrize("chunk", [0, 1, 3, 4, 7, 48])
def test_local_chunking_renders_each_window_once_same_pixels(tmp_path, host, clip20, chunk):
    ref = tmp_path / "ref" / "f.####.exr"
    p = plan_mod.build(str(_temporal(tmp_path, "one", 0)), host=host, input=str(clip20), output=str(ref))
    one = run(p, host, recorder())
    out = tmp_path / f"c{chunk}" / "f.####.exr"
    p = plan_mod.build(str(_temporal(tmp_path, "c", chunk)), host=host, input=str(clip20), output=str(out))
    s = run(p, host, recorder())
    assert s.windows_rendered == s.windows_needed == one.windows_rendered == 6  # 20 frames, window 5, stride 3
    assert _exr_tree(out.parent) == _exr_tree(ref.parent)
    assert not list((out.parent / "f.cinescale" / "seams").glob("*")) if (out.parent / "f.cinescale" / "seams").is_dir() else True


@pytest.mark.parametrize("farm_chunk, order", [(4, 1), (5, -1), (7, -1), (3, 1)])
def test_farm_tasks_hand_windows_on_in_any_order(tmp_path, host, clip20, farm_chunk, order):
    """Farm tasks (one process each, any chunk size, any order) with
    --job-frames: each window rendered by one task, the shared frames
    published by whichever finishes last, the same bytes as one pass."""
    ref = tmp_path / "ref" / "f.####.exr"
    p = plan_mod.build(str(_temporal(tmp_path, "one", 0)), host=host, input=str(clip20), output=str(ref))
    run(p, host, recorder())
    out = tmp_path / "farm" / "f.####.exr"
    preset = _temporal(tmp_path, "farm", 4)
    tasks = [(a, min(a + farm_chunk - 1, 1020)) for a in range(1001, 1021, farm_chunk)][::order]
    rendered = 0
    for a, b in tasks:
        p = plan_mod.build(str(preset), host=host, input=str(clip20), output=str(out), frames=f"{a}-{b}")
        rendered += run(p, host, recorder(), job_frames=tuple(range(1001, 1021))).windows_rendered
    assert rendered == 6
    assert _exr_tree(out.parent) == _exr_tree(ref.parent)
    assert not list((out.parent / "f.cinescale" / "seams").glob("*"))  # handed-on data removed once published


def test_movie_chunks_with_seams_assemble_to_the_single_pass(tmp_path, host, clip20):
    import av

    def frames(path):
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="rgb48le") for f in c.decode(c.streams.video[0])]

    ref = tmp_path / "ref" / "m.mov"
    run(plan_mod.build(str(_temporal(tmp_path, "one", 0, "prores_hq")), host=host, input=str(clip20),
                       output=str(ref)), host, recorder())
    out = tmp_path / "farm" / "m.mov"
    preset = _temporal(tmp_path, "farm", 6, "prores_hq")
    rendered = 0
    for a, b in [(1013, 1020), (1001, 1006), (1007, 1012)]:
        p = plan_mod.build(str(preset), host=host, input=str(clip20), output=str(out), frames=f"{a}-{b}")
        rendered += run(p, host, recorder(), job_frames=tuple(range(1001, 1021)), assemble=False).windows_rendered
    assert rendered == 6
    from cinescale_post.orchestrator.assembly import assemble_movie
    from cinescale_post.orchestrator.manifest import Manifest

    final = assemble_movie(Manifest(str(out)), p.source, str(out))
    got, want = frames(final), frames(ref)
    assert len(got) == len(want) == 20 and all(np.array_equal(x, y) for x, y in zip(got, want))


def test_plan_snaps_the_chunk_to_whole_window_strides_and_says_so(tmp_path, host, clip20):
    from cinescale_post.pipeline.windows import snap_chunk

    p = plan_mod.build(str(_temporal(tmp_path, "c", 4)), host=host, input=str(clip20),
                       output=str(tmp_path / "o" / "f.####.exr"))
    assert p.output.chunk == 3
    assert any("output.chunk 4 snapped to 3" in w for w in p.warnings)
    p = plan_mod.build(str(_temporal(tmp_path, "c6", 6)), host=host, input=str(clip20),
                       output=str(tmp_path / "o" / "f.####.exr"))
    assert p.output.chunk == 6 and not any("snapped" in w for w in p.warnings)
    # the shipped wan-uhd-refine (window 81, overlap 8, chunk 48): one 73-frame stride per chunk
    assert snap_chunk(48, 81, 8)[0] == 73 and snap_chunk(0, 81, 8) == (0, None) and snap_chunk(48, 1, 0)[0] == 48


# ------------------------------------------------------------------ the memory plan frozen by the first task


def test_memory_plan_frozen_by_the_first_task_holds_across_cards(tmp_path, host, clip20, monkeypatch):
    """Task 1 plans on a 4 GiB card (VAE tile 512), task 2 on an 8 GiB card
    (alone it would choose no tiling: another picture, and a refused resume),
    a resume on a 3.2 GiB card (needs model offload: same pixels): all adopt
    the manifest's plan and give the bytes of one pass; a 2 GiB card exits 5."""
    preset = write_preset(tmp_path / "m.toml", backend="test-memory", codec="exr", width=32, height=16,
                          window=(9, 2), chunk=7)

    def task(out, free, frames=None):
        monkeypatch.setenv("CINESCALE_FREE_MEMORY", free)
        p = plan_mod.build(str(preset), host=host, input=str(clip20), output=str(out), frames=frames)
        sink = recorder()
        return p, run(p, host, sink, job_frames=tuple(range(1001, 1021))), sink

    ref = tmp_path / "ref" / "f.####.exr"
    p, _, _ = task(ref, "4GiB")
    assert p.memory["choice"] == {"vae_tile": 512, "window": 9, "offload": "none"}
    out = tmp_path / "farm" / "f.####.exr"
    task(out, "4GiB", "1001-1007")
    p2, _, sink = task(out, "8GiB", "1008-1020")
    assert p2.memory["choice"]["vae_tile"] is None  # what this card alone would do
    assert any("using the render's frozen plan (window 9, VAE tile 512 px, offload none" in w["message"]
               for w in sink.names("warning"))
    assert _exr_tree(out.parent) == _exr_tree(ref.parent)
    for f in (1009, 1010, 1015):
        (out.parent / f"f.{f}.exr").unlink()
    p3, s3, sink = task(out, "3.2GiB", "1008-1020")  # the resume, on a busier card
    assert p3.memory["choice"] == {"vae_tile": None, "window": 9, "offload": "model"}
    assert s3.status == "finished" and any("model offload (same pixels" in w["message"]
                                           for w in sink.names("warning"))
    assert _exr_tree(out.parent) == _exr_tree(ref.parent)
    (out.parent / "f.1012.exr").unlink()
    with pytest.raises(OutOfMemoryError) as info:
        task(out, "2GiB", "1008-1020")
    msg = str(info.value)
    assert info.value.exit_code == 5 and "needs 3.0 GiB" in msg and "1.3 GiB usable here" in msg
    assert "window 9, VAE tile 512 px" in msg
