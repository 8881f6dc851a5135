"""QC does not cry wolf on any master format: a Lanczos draft (detail gain
known to be 1) rendered to every codec the writers offer passes QC clean.

Before the reference went through the output's own format, ProRes 422 Proxy
read 0.65 and LT 0.81 here (flagged "soft"), DNxHR HQX 1.075."""

from __future__ import annotations

import functools
import subprocess

import numpy as np
import pytest

from cinescale_post.pipeline.host import Host
from cinescale_post.media.movie_codecs import MOVIE_CODECS
from cinescale_post.qc.pipeline import run_qc
from cinescale_post.testing import make_clip

from ..helpers import write_preset

SRC = (128, 72)
OUT = (256, 144)  # DNxHR's smallest frame is 256x120
FRAMES = 4  # libx265 in MOV cannot finish a 2-frame stream (FFmpeg 8.1: "not yet implemented")

CODECS = sorted(Host(load_entrypoints=False).writers())


@functools.lru_cache(maxsize=1)
def _natural(w: int, h: int) -> np.ndarray:
    """Noise with a natural 1/f amplitude spectrum (detail at every scale, as
    in a real plate; a blurred texture has too little for a codec to lose)."""
    rng = np.random.default_rng(3)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    chans = [np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) / f, s=(h, w)) for _ in range(3)]
    img = np.stack(chans, -1)
    img = 0.7 * img.mean(-1, keepdims=True) + 0.3 * img
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)


def _content(i: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.ascontiguousarray(_natural(w + 16, h + 16)[i: i + h, i: i + w])  # pans 1 px per frame


def _output_name(host, codec: str) -> str:
    factory = host.writer(codec)
    if factory.per_frame:
        return f"{codec}/f.####{factory.suffixes[0]}"
    suffixes = MOVIE_CODECS[codec].suffixes if codec in MOVIE_CODECS else factory.suffixes
    return f"{codec}/master{'.mov' if '.mov' in suffixes else suffixes[0]}"


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("codecs") / "plate.mov", frames=FRAMES, size=SRC, codec="libx264",
                     content=_content)


def _ffmpeg_frames(path) -> int:
    """Frames an independent decoder (the ffmpeg binary) gets from a movie."""
    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("codec", CODECS)
def test_draft_in_every_codec_passes_qc(qc_host, plate, tmp_path, codec):
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import NullSink
    from cinescale_post.orchestrator.render_job import run

    long_gop = codec in MOVIE_CODECS and MOVIE_CODECS[codec].family == "h26x"
    preset = write_preset(tmp_path / "p.toml", codec=codec, width=OUT[0], height=OUT[1], audio=False,
                          chunk=0 if long_gop else 2)  # long-GOP chunks cannot be joined
    out = tmp_path / _output_name(qc_host, codec)
    run(plan_mod.build(str(preset), host=qc_host, input=str(plate), output=str(out)), qc_host, NullSink())
    if "#" not in out.name:
        assert _ffmpeg_frames(out) == FRAMES
    r = run_qc(str(out), host=qc_host, out_dir=str(tmp_path / "qc"), plots=False, html=False, sheets=0,
               contact=0).report
    gains = [f["detail_gain"] for f in r["frames"]]
    assert all(0.98 < g < 1.02 for g in gains), (codec, gains)
    s = r["summary"]
    assert (s["flagged_frames"], s["flagged_chunks"], s["flagged_seams"]) == (0, 0, 0), r["frames"]
    assert r["rerender"] == {"frames": "", "count": 0}
    assert "in the output's own format" in r["metrics"]["detail_gain"]


def test_codec_is_recognised_from_the_stream_without_a_manifest(qc_host, plate, tmp_path):
    """A master nobody's manifest describes (moved, or from another tool):
    ProRes is recognised by its sample entry, and the draft still reads 1.
    (Also holds assemble to keep the sample entry: it used to tag every
    joined ProRes master apch, HQ.)"""
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.orchestrator.progress import NullSink
    from cinescale_post.orchestrator.render_job import run

    preset = write_preset(tmp_path / "p.toml", codec="prores_proxy", width=OUT[0], height=OUT[1], audio=False)
    out = tmp_path / "m" / "master.mov"
    run(plan_mod.build(str(preset), host=qc_host, input=str(plate), output=str(out)), qc_host, NullSink())
    for p in out.parent.glob("master.mov.*"):  # manifest, journals, OTIO: only the movie is left
        if p.is_file():
            p.unlink()
    r = run_qc(str(out), str(plate), host=qc_host, out_dir=str(tmp_path / "qc"), plots=False, html=False, sheets=0,
               contact=0).report
    assert r["setup"]["manifest"] is None
    assert "prores_proxy (yuv422p10le)" in r["metrics"]["detail_gain"]
    assert all(0.98 < f["detail_gain"] < 1.02 for f in r["frames"])
    assert r["summary"]["flagged_frames"] == 0
