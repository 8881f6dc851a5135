"""Render loop end to end with the draft engine and the deterministic test
backends: output counts, resume, refusal to mix, chunks + assemble."""

from fractions import Fraction

import av
import numpy as np
import pytest

import cinescale_post.pipeline.plan as plan_mod
from cinescale_post.contracts.errors import InputError, OutputError
from cinescale_post.orchestrator.render_job import run
from cinescale_post.testing import make_clip, make_sequence

from ..helpers import recorder, tree_bytes, write_preset




@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "in.mov", frames=10, size=(64, 48), rate=Fraction(24000, 1001),
                     audio="pcm_s24le", timecode="01:00:00:00", content="index")


def _render(host, preset, inp, out, **kw):
    run_kw = {k: kw.pop(k) for k in ("overwrite", "verify", "assemble") if k in kw}
    sink = recorder()
    p = plan_mod.build(str(preset), host=host, input=str(inp), output=str(out), **kw)
    summary = run(p, host, sink, **run_kw)
    return p, summary, sink


def _decode_movie(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb48le") for f in c.decode(s)]
        return frames, s


def test_draft_render_to_prores_keeps_count_rate_timecode_audio(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="prores_hq", chunk=4)
    out = tmp_path / "out" / "master.mov"
    p, summary, sink = _render(host, preset, clip, out)
    assert summary.status == "finished" and summary.outputs == [str(out)]
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (128, 96)
        assert v.average_rate == Fraction(24000, 1001)
        assert sum(1 for _ in c.decode(v)) == 10
        assert len(c.streams.audio) == 1
        tc = v.metadata.get("timecode") or c.metadata.get("timecode")
        assert tc == "01:00:00:00"
    assert not (tmp_path / "out" / "master.mov.cinescale" / "chunks").exists() or \
        not list((tmp_path / "out" / "master.mov.cinescale" / "chunks").iterdir())
    assert len(sink.names("frame")) == 10 and sink.names("finished")[0]["status"] == "finished"
    # a second run finds the assembled master verified and renders nothing
    _, again, sink2 = _render(host, preset, clip, out)
    assert again.status == "finished" and sink2.names("frame") == []


def test_exr_sequence_resume_and_refusal_to_mix(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml", codec="exr")
    out = tmp_path / "comp" / "sh010.####.exr"
    _render(host, preset, clip, out, frames="1001-1004")
    assert sorted(p.name for p in (tmp_path / "comp").glob("*.exr")) == [f"sh010.{n}.exr" for n in range(1001, 1005)]
    _, summary, sink = _render(host, preset, clip, out)
    assert len(sink.names("frame")) == 6  # only the frames not yet rendered
    assert sink.names("start")[0]["done"] == 4
    other = write_preset(tmp_path / "q.toml", codec="exr", backend_options='upscaler = "bicubic"')
    with pytest.raises(OutputError) as e:
        _render(host, other, clip, out)
    assert "--overwrite" in str(e.value)
    _, summary, sink = _render(host, other, clip, out, overwrite=True)
    assert len(sink.names("frame")) == 10


def test_subrange_renders_are_bit_identical_to_full_render(tmp_path, host, clip):
    """Temporal windows with overlap: 3 farm-style chunks == one pass, byte for byte."""
    preset = write_preset(tmp_path / "p.toml", backend="test-temporal", codec="exr", window=(5, 2), chunk=4)
    full = tmp_path / "full" / "a.####.exr"
    _render(host, preset, clip, full)
    parts = tmp_path / "parts" / "a.####.exr"
    for rng in ("1001-1003", "1004-1007", "1008-1010"):
        _render(host, preset, clip, parts, frames=rng)
    a, b = tree_bytes(tmp_path / "full", "*.exr"), tree_bytes(tmp_path / "parts", "*.exr")
    assert len(a) == 10 and a == b


def test_chunked_movie_plus_assemble_equals_single_pass(tmp_path, host, clip):
    preset3 = write_preset(tmp_path / "c.toml", backend="test-temporal", codec="prores_hq", window=(5, 2), chunk=4)
    preset1 = write_preset(tmp_path / "s.toml", backend="test-temporal", codec="prores_hq", window=(5, 2), chunk=0)
    chunked, single = tmp_path / "c" / "m.mov", tmp_path / "s" / "m.mov"
    _, s3, sink3 = _render(host, preset3, clip, chunked)
    assert len(sink3.names("chunk_done")) == 4  # chunk 4 snapped to the window stride 3
    _render(host, preset1, clip, single)
    fa, sa = _decode_movie(chunked)
    fb, sb = _decode_movie(single)
    assert len(fa) == len(fb) == 10
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))


def test_farm_chunks_then_assemble_command(tmp_path, host, clip):
    preset = write_preset(tmp_path / "c.toml", codec="prores_hq", chunk=4)
    out = tmp_path / "m.mov"
    for rng in ("1001-1004", "1005-1008", "1009-1013"):  # the last chunk overshoots: clamped
        p, summary, sink = _render(host, preset, clip, out, frames=rng, assemble=False)
    assert not out.exists()
    from cinescale_post.orchestrator.manifest import Manifest
    from cinescale_post.orchestrator.assembly import assemble_movie

    final = assemble_movie(Manifest(str(out)), p.source, str(out))
    frames, s = _decode_movie(final)
    assert len(frames) == 10


def test_empty_range_is_success(tmp_path, host, clip):
    preset = write_preset(tmp_path / "p.toml")
    _, summary, sink = _render(host, preset, clip, tmp_path / "x.####.exr", frames="2001-2010")
    assert summary.status == "empty"
    assert any("no frames" in w["message"] for w in sink.names("warning"))


def test_sequence_gap_inside_range_is_an_input_error(tmp_path, host):
    make_sequence(tmp_path / "in" / "plate.####.exr", range(1001, 1011), skip=[1005])
    preset = write_preset(tmp_path / "p.toml")
    with pytest.raises(InputError) as e:
        _render(host, preset, tmp_path / "in" / "plate.####.exr", tmp_path / "o.####.exr")
    assert "1005" in str(e.value) and "--frames" in str(e.value)
    _, summary, _ = _render(host, preset, tmp_path / "in" / "plate.####.exr", tmp_path / "o.####.exr",
                            frames="1001-1004,1006-1010")
    assert summary.status == "finished"


def test_odd_source_is_snapped_and_pixels_land_in_place(tmp_path, host):
    src = make_clip(tmp_path / "odd.mov", frames=2, size=(63, 47), codec="libx264", pix_fmt="yuv444p")
    preset = write_preset(tmp_path / "p.toml", width=128, height=96)
    p, summary, sink = _render(host, preset, src, tmp_path / "o.####.exr")
    assert p.output.geometry.scale_w == 128 and p.output.geometry.scale_h == 96
    assert any("resampled to exactly" in w for w in p.warnings)
    wide = make_clip(tmp_path / "wide.mov", frames=1, size=(64, 24), codec="libx264", pix_fmt="yuv444p")
    p2, _, _ = _render(host, preset, wide, tmp_path / "w.####.exr")
    g = p2.output.geometry
    assert (g.scale_w, g.scale_h, g.x, g.y) == (128, 48, 0, 24)
    import OpenEXR

    with OpenEXR.File(str(tmp_path / "w.1001.exr")) as f:
        px = f.channels()["RGB"].pixels
    assert px.shape == (96, 128, 3)
    assert float(np.abs(px[:24]).max()) == 0.0 and float(px[24:72].mean()) > 0.05


def test_handles_feed_context_but_are_never_written(tmp_path, host, clip):
    """--handles 2: each window also sees 2 frames either side (the temporal
    backend's output depends on them), yet only the requested frames are written."""
    preset = write_preset(tmp_path / "p.toml", backend="test-temporal", codec="exr", window=(5, 2))
    _render(host, preset, clip, tmp_path / "h0" / "a.####.exr", frames="1004-1006")
    p, _, sink = _render(host, preset, clip, tmp_path / "h2" / "a.####.exr", frames="1004-1006", handles=2)
    assert p.handles == 2 and len(sink.names("frame")) == 3
    names = sorted(x.name for x in (tmp_path / "h2").glob("*.exr"))
    assert names == ["a.1004.exr", "a.1005.exr", "a.1006.exr"]
    a, b = tree_bytes(tmp_path / "h0", "*.exr"), tree_bytes(tmp_path / "h2", "*.exr")
    assert a.keys() == b.keys() and a != b


def test_non_main_rank_renders_but_publishes_nothing(tmp_path, host, clip, monkeypatch):
    """Under torchrun only rank 0 writes files, manifests and progress."""
    preset = write_preset(tmp_path / "p.toml", codec="prores_hq", chunk=4)
    monkeypatch.setenv("RANK", "1")
    _, summary, sink = _render(host, preset, clip, tmp_path / "r1" / "m.mov")
    assert summary.status == "finished" and sink.events == []
    assert not (tmp_path / "r1").exists() or not any((tmp_path / "r1").rglob("*.*"))
    monkeypatch.setenv("RANK", "0")
    _, summary, sink = _render(host, preset, clip, tmp_path / "r0" / "m.mov")
    assert (tmp_path / "r0" / "m.mov").exists() and len(sink.names("frame")) == 10


def test_lookbehind_frames_are_read_before_each_window(tmp_path, host, clip):
    """A backend asking for 2 frames of look-behind gets the source frames just
    before each window (never rendered or written), also for a sub-range."""
    b = host.backend("test-noise")
    seen = []
    real = type(b).render

    def render(job):
        seen.append(([f.number for f in job.lookbehind], [f.number for f in job.frames]))
        return real(b, job)

    b.lookbehind_frames = lambda options, stages: 2
    b.render = render
    preset = write_preset(tmp_path / "p.toml", backend="test-noise")
    _render(host, preset, clip, tmp_path / "o" / "a.####.exr", frames="1001-1002,1006")
    assert seen == [([], [1001]), ([1001], [1002]), ([1004, 1005], [1006])]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.exr")) == ["a.1001.exr", "a.1002.exr", "a.1006.exr"]
