"""Masters a finishing house accepts (issue 11, items 1, 2, 3, 7): colour tags
in the bitstream, non-square pixels, alpha, SD sources in HD/UHD masters.

Every output is judged by the ffmpeg binary from imageio-ffmpeg
(``ffjudge``), and by PyAV/OpenEXR where a field is only visible there.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from cinescale_post.contracts.media import Colour

from . import ffjudge
from .test_writers import make_clip, probe_clip, write_movie

# ----------------------------------------------------------------- 1. colour tags in the bitstream

_NAMES = {1: "bt709", 5: "bt470bg", 6: "smpte170m"}


def _prores_header_tags(path) -> tuple[int, int, int]:
    """(primaries, transfer, matrix) bytes of the first ProRes frame header."""
    with av.open(str(path)) as c:
        b = bytes(next(c.demux(c.streams.video[0])))
    assert b[4:8] == b"icpf"
    return b[22], b[23], b[24]


@pytest.mark.parametrize("codec,suffix,size,raw", [
    ("prores_hq", ".mov", (64, 48), None),
    ("prores_4444", ".mov", (64, 48), None),
    ("dnxhr_hqx", ".mov", (256, 144), "dnxhd"),
    ("h264_10", ".mp4", (64, 48), "h264"),
    ("h265_10", ".mp4", (64, 48), "hevc"),
])
@pytest.mark.parametrize("tags", [(1, 1, 1), (6, 6, 6)])
def test_frame_level_colour_tags_equal_the_streams(tmp_path, codec, suffix, size, raw, tags):
    """ffmpeg's frame fields (``-show_frames``) equal the stream's tags; for
    H.26x and DNxHR the packets are first copied into a bare elementary
    stream, so only the bitstream (VUI / frame header) can supply them."""
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=2, size=size))
    prim, trc, mat = tags
    opts = {"preset": "ultrafast"} if codec.startswith("h26") else {}
    out = write_movie(info, tmp_path / f"o{suffix}", codec, size=size, options=opts,
                      colour=Colour(prim, trc, mat, 1))
    if codec == "dnxhr_hqx":
        mat = 1  # VC-3 signals BT.709 in every frame header; the writer codes BT.709 (see movie_writer)
    want = {"color_primaries": _NAMES[prim], "color_trc": _NAMES[trc], "color_space": _NAMES[mat]}
    for fr in ffjudge.frame_info(out, frames=2):  # through the container
        assert {k: fr[k] for k in want} == want, (codec, fr)
    if raw == "dnxhd":  # DNxHR's header holds the matrix only; primaries/transfer live in 'colr'
        fr = ffjudge.frame_info(out, raw=raw, tmp=tmp_path)[0]
        assert fr["color_space"] == _NAMES[mat], fr
    elif raw:
        for fr in ffjudge.frame_info(out, raw=raw, tmp=tmp_path, frames=2):
            assert {k: fr[k] for k in want} == want, (codec, fr)
    if codec.startswith("prores"):
        assert _prores_header_tags(out) == (prim, trc, mat)
    assert ffjudge.frame_count(out) == 2


# ----------------------------------------------------------------- generated sources

from fractions import Fraction  # noqa: E402
import subprocess  # noqa: E402

import OpenEXR  # noqa: E402

import cinescale_post.pipeline.plan as plan_mod  # noqa: E402
from cinescale_post.orchestrator.render_job import run  # noqa: E402

from ..helpers import recorder, write_preset  # noqa: E402


def _source_picture(w: int, h: int) -> np.ndarray:
    """Mid-grey (0.5) with a 2-pixel white frame: the picture's extent is
    measurable after any resize, and bars (black) are not confused with it."""
    rgb = np.full((h, w, 3), 0.5, np.float32)
    rgb[:2], rgb[-2:], rgb[:, :2], rgb[:, -2:] = 1.0, 1.0, 1.0, 1.0
    return rgb


def make_movie(path, *, size, codec="dnxhd", profile="dnxhr_sq", pix_fmt="yuv422p", sar=None, frames=2,
               colour=(1, 1, 1), alpha=None, rate=25) -> str:
    """A small movie through PyAV with a given pixel aspect (``sar``), colour tags
    and optional alpha plane (yuva444p10le ProRes 4444); Y'CbCr by swscale is
    fine here: the tests measure geometry and tags, not code values."""
    w, h = size
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate, options={"profile": profile} if profile else {})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        cc = s.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace = colour
        if sar is not None:
            cc.sample_aspect_ratio = Fraction(sar)
        src_fmt = "rgba64le" if alpha is not None else "rgb48le"
        for i in range(frames):
            rgb = _source_picture(w, h)
            px = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], -1)
            vf = av.VideoFrame.from_ndarray(np.rint(px * 65535).astype(np.uint16), format=src_fmt)
            vf = vf.reformat(format=pix_fmt, dst_colorspace=colour[2] if colour[2] in (1, 5, 6) else None)
            vf.color_primaries, vf.color_trc, vf.colorspace = colour
            vf.pts, vf.time_base = i, Fraction(1, rate)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return str(path)


def make_exr(pattern, numbers, *, size, alpha=None, par=None) -> str:
    """EXR frames: straight picture premultiplied by ``alpha`` (RGBA), optional
    ``pixelAspectRatio``."""
    w, h = size
    for n in numbers:
        rgb = _source_picture(w, h)
        hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        if par is not None:
            hdr["pixelAspectRatio"] = float(par)
        if alpha is not None:
            ch = {"RGBA": np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1).astype(np.float16)}
        else:
            ch = {"RGB": rgb.astype(np.float16)}
        with OpenEXR.File(hdr, ch) as f:
            f.write(str(pattern).replace("####", str(n)))
    return str(pattern)


def render(host, tmp_path, inp, out, *, codec, size, overrides=(), **preset_kw):
    preset = write_preset(tmp_path / "p.toml", codec=codec, width=size[0], height=size[1], chunk=0, **preset_kw)
    p = plan_mod.build(str(preset), host=host, input=str(inp), output=str(out), overrides=tuple(overrides))
    summary = run(p, host, recorder())
    assert summary.status == "finished"
    return p


def ffmpeg_gray(path, size, frame=0) -> np.ndarray:
    """Frame ``frame`` decoded by the ffmpeg binary to 16-bit grey (H, W) in [0, 1]."""
    w, h = size
    p = subprocess.run([ffjudge.FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf",
                        f"select=eq(n\\,{frame})", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray16le", "-"],
                       capture_output=True, timeout=120, check=True)
    return np.frombuffer(p.stdout, "<u2").reshape(h, w).astype(np.float32) / 65535.0


def picture_extent(gray: np.ndarray, thresh=0.2) -> tuple[int, int]:
    """(width, height) of the non-black region (bars are black)."""
    cols = np.where(gray.max(axis=0) > thresh)[0]
    rows = np.where(gray.max(axis=1) > thresh)[0]
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def exr(path):
    with OpenEXR.File(str(path)) as f:
        return dict(f.header()), {k: np.asarray(v.pixels, np.float32) for k, v in f.channels().items()}


# ----------------------------------------------------------------- 2. non-square pixels


def test_pal_16_15_dnxhr_is_desqueezed_to_4_3(tmp_path, host):
    """PAL 720x576 at SAR 16:15 is 4:3; into 640x360 it becomes a 480x360
    picture with pillarbox bars, square pixels (ffmpeg: SAR 1:1 DAR 16:9).
    Ignoring the SAR (the bug) would give 450x360 (1.25:1)."""
    src = make_movie(tmp_path / "pal.mov", size=(720, 576), sar=Fraction(16, 15), colour=(5, 6, 5))
    assert ffjudge.display_aspect(src)[:2] == (Fraction(16, 15), Fraction(4, 3))
    out = tmp_path / "o" / "m.mov"
    p = render(host, tmp_path, src, out, codec="prores_hq", size=(640, 360))
    assert p.source.pixel_aspect == Fraction(16, 15)
    sar, dar, wh = ffjudge.display_aspect(out)
    assert (sar, dar, wh) == (Fraction(1), Fraction(16, 9), (640, 360))
    w, h = picture_extent(ffmpeg_gray(out, (640, 360)))
    assert h == 360 and abs(w - 480) <= 2, (w, h)


@pytest.mark.parametrize("squeeze,want_sar,want_picture", [
    ("desqueeze", Fraction(1), (640, 134)),  # 512x214 at 2:1 shows 4.78:1
    ("keep", Fraction(2), (640, 268)),  # kept squeezed: half as wide as shown
])
def test_2x_anamorphic_plate(tmp_path, host, squeeze, want_sar, want_picture):
    src = make_movie(tmp_path / "ana.mov", size=(512, 214), codec="prores_ks", profile="hq",
                     pix_fmt="yuv422p10le", sar=2)
    out = tmp_path / "o" / "m.mov"
    render(host, tmp_path, src, out, codec="prores_hq", size=(640, 360), overrides=(f"output.squeeze={squeeze}",))
    sar, dar, _ = ffjudge.display_aspect(out)
    assert sar == want_sar and dar == Fraction(640, 360) * want_sar
    w, h = picture_extent(ffmpeg_gray(out, (640, 360)))
    assert abs(w - want_picture[0]) <= 2 and abs(h - want_picture[1]) <= 2, (w, h)
    # the picture's *display* aspect is the source's in both cases
    assert abs(w * float(sar) / h - 512 * 2 / 214) < 0.05


def test_h264_keeps_squeeze_in_its_vui(tmp_path, host):
    src = make_movie(tmp_path / "ana.mov", size=(512, 214), codec="prores_ks", profile="hq",
                     pix_fmt="yuv422p10le", sar=Fraction(9, 5))
    out = tmp_path / "o" / "m.mov"
    render(host, tmp_path, src, out, codec="h264_10", size=(640, 360),
           overrides=("output.squeeze=keep", 'output.options.preset="ultrafast"'))
    assert ffjudge.frame_info(out, raw="h264", tmp=tmp_path)[0]["sar"] == "9/5"


def test_exr_pixel_aspect_read_and_written(tmp_path, host):
    src = make_exr(tmp_path / "in" / "p.####.exr" if (tmp_path / "in").mkdir() is None else None, [1001],
                   size=(128, 54), par=2.0)
    kept = render(host, tmp_path, src, tmp_path / "k" / "o.####.exr", codec="exr", size=(128, 96),
                  overrides=("output.squeeze=keep",))
    assert kept.source.pixel_aspect == 2
    hdr, ch = exr(tmp_path / "k" / "o.1001.exr")
    assert hdr["pixelAspectRatio"] == 2.0
    hdr, ch = exr(render(host, tmp_path, src, tmp_path / "d" / "o.####.exr", codec="exr",
                         size=(128, 96)).output.path % 1001)
    assert hdr["pixelAspectRatio"] == 1.0
    w, h = picture_extent(ch["RGB"].max(axis=-1))
    assert abs(w / h - 128 * 2 / 54) < 0.1, (w, h)  # desqueezed: 4.74:1 on square pixels


def test_input_pixel_aspect_override(tmp_path, host):
    src = make_exr(tmp_path / "p.####.exr", [1001], size=(128, 54))  # file says square
    p = render(host, tmp_path, src, tmp_path / "o" / "o.####.exr", codec="exr", size=(128, 96),
               overrides=('input.pixel_aspect="2:1"',))
    assert p.source.pixel_aspect == 2 and (p.output.geometry.scale_w, p.output.geometry.scale_h) == (128, 27)
    from cinescale_post.contracts.errors import PlanError

    with pytest.raises(PlanError, match="input.pixel_aspect"):
        render(host, tmp_path, src, tmp_path / "o2" / "o.####.exr", codec="exr", size=(128, 96),
               overrides=('input.pixel_aspect="wide"',))


# ----------------------------------------------------------------- 3. alpha


def _ramp_alpha(w, h) -> np.ndarray:
    """Alpha: 0 on the left quarter, a ramp, 1 on the right quarter."""
    x = np.clip((np.arange(w, dtype=np.float32) - w / 4) / (w / 2), 0.0, 1.0)
    return np.tile(x, (h, 1)).astype(np.float32)


def test_prores_4444_alpha_to_exr_rgba(tmp_path, host):
    """ProRes 4444 (straight alpha) -> EXR: A present, resampled with the
    picture's geometry (pad bars transparent), colour premultiplied."""
    a = _ramp_alpha(64, 48)
    src = make_movie(tmp_path / "a.mov", size=(64, 48), codec="prores_ks", profile="4444",
                     pix_fmt="yuva444p10le", alpha=a)
    p = render(host, tmp_path, src, tmp_path / "o" / "o.####.exr", codec="exr", size=(192, 108))
    assert p.source.alpha == "straight" and p.output.alpha == "premultiplied"
    hdr, ch = exr(tmp_path / "o" / "o.1001.exr")
    assert "RGBA" in ch, ch.keys()
    rgba = ch["RGBA"]
    g = p.output.geometry  # 64x48 -> 144x108 pillarboxed in 192x108
    assert (g.scale_w, g.scale_h, g.x) == (144, 108, 24)
    alpha = rgba[..., 3]
    assert np.all(alpha[:, :g.x] == 0) and np.all(alpha[:, g.x + g.scale_w:] == 0)  # bars transparent
    inner = alpha[:, g.x:g.x + g.scale_w]
    want = np.tile(np.clip((np.arange(144) + 0.5) * 64 / 144 - 0.5 - 16, 0, 32) / 32, (108, 1))
    assert np.abs(inner[10:-10] - want[10:-10]).max() < 0.06
    mid = rgba[54, g.x + 72]  # premultiplied: grey 0.5 x alpha
    assert abs(mid[0] - 0.5 * mid[3]) < 0.02 and 0.3 < mid[3] < 0.7


def test_exr_rgba_to_prores_4444_straight(tmp_path, host):
    """EXR (premultiplied) -> ProRes 4444: ffmpeg decodes an alpha plane, and
    the colour is straight again (grey 0.5 wherever alpha > 0)."""
    a = _ramp_alpha(64, 48)
    src = make_exr(tmp_path / "p.####.exr", [1001, 1002], size=(64, 48), alpha=a)
    out = tmp_path / "o" / "m.mov"
    render(host, tmp_path, src, out, codec="prores_4444", size=(64, 48))
    assert "yuva444p" in ffjudge.stream_line(out)
    raw = subprocess.run([ffjudge.FFMPEG, "-v", "error", "-i", str(out), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgba64le", "-"], capture_output=True, check=True).stdout
    px = np.frombuffer(raw, "<u2").reshape(48, 64, 4).astype(np.float32) / 65535
    assert np.abs(px[..., 3] - a).max() < 0.01
    inner, a_in = px[4:-4, 4:-4, 1], a[4:-4, 4:-4]  # inside the white frame
    assert np.abs(inner[a_in > 0.1] - 0.5).max() < 0.03  # straight grey again


def test_alpha_dropped_with_a_warning_in_the_manifest(tmp_path, host):
    import json

    src = make_exr(tmp_path / "p.####.exr", [1001], size=(64, 48), alpha=_ramp_alpha(64, 48))
    out = tmp_path / "o" / "m.mov"
    p = render(host, tmp_path, src, out, codec="prores_hq", size=(64, 48))
    assert any("cannot hold it: alpha is dropped" in w for w in p.warnings)
    manifest = json.loads((tmp_path / "o" / "m.mov.manifest.json").read_text())
    assert any("alpha is dropped" in w for w in manifest["plan"]["warnings"])
    assert "yuva" not in ffjudge.stream_line(out)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_png_tiff_rgba_keeps_alpha_in_exr(tmp_path, host, suffix):
    import cv2

    a = _ramp_alpha(64, 48)
    bgra = np.concatenate([_source_picture(64, 48), a[..., None]], -1)[..., [2, 1, 0, 3]]
    cv2.imwrite(str(tmp_path / f"p.1001{suffix}"), np.rint(bgra * 65535).astype(np.uint16))
    p = render(host, tmp_path, tmp_path / f"p.####{suffix}", tmp_path / "o" / "o.####.exr", codec="exr",
               size=(64, 48))
    assert p.source.alpha == "straight"
    _, ch = exr(tmp_path / "o" / "o.1001.exr")
    rgba = ch["RGBA"]
    assert np.abs(rgba[..., 3] - a).max() < 1e-3
    assert np.abs(rgba[24, 40, :3] - 0.5 * a[24, 40]).max() < 2e-3  # premultiplied


# ----------------------------------------------------------------- 7. SD sources in HD/UHD masters


@pytest.mark.parametrize("overrides,size,want", [
    ((), (1280, 720), ("bt709", "bt709", "bt709")),  # an HD master is BT.709 throughout (issue 23)
    (("output.primaries=source",), (1280, 720), ("bt470bg", "bt709", "bt709")),  # matrix only, as before
    (("output.matrix=source", "output.primaries=source"), (1280, 720), ("bt470bg", "smpte170m", "bt470bg")),
    ((), (720, 576), ("bt470bg", "smpte170m", "bt470bg")),  # an SD master keeps the source's
    (("output.primaries=bt709",), (720, 576), ("bt709", "bt709", "bt470bg")),
])
def test_sd_source_in_hd_master(tmp_path, host, overrides, size, want):
    """A PAL (BT.601: BT.470BG matrix and primaries) source rendered to a
    1280x720 ProRes master: the frames say BT.709 (matrix, and primaries
    where asked), and ffmpeg decoding them with those tags shows the source's
    grey (no matrix mix-up: grey has no chroma, so check a colour too)."""
    # ProRes, not DNxHR: FFmpeg's DNxHR header always says BT.709, so a PAL DNxHR
    # clip decodes as BT.709 (ffmpeg and we agree); ProRes carries BT.470BG.
    src = make_movie(tmp_path / "pal.mov", size=(720, 576), sar=Fraction(16, 15), colour=(5, 6, 5),
                     codec="prores_ks", profile="hq", pix_fmt="yuv422p10le")
    out = tmp_path / "o" / "m.mov"
    p = render(host, tmp_path, src, out, codec="prores_hq", size=size, overrides=overrides)
    assert (p.source.colour.matrix, p.source.colour.primaries) == (5, 5)
    fr = ffjudge.frame_info(out)[0]
    assert (fr["color_primaries"], fr["color_trc"], fr["color_space"]) == want


def _ffmpeg_rgb_at(path, x: int, y: int) -> np.ndarray:
    """R'G'B' ffmpeg decodes at (x, y) of the first frame, by the file's own tags."""
    p = subprocess.run([ffjudge.FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
                        "-vf", f"crop=2:2:{x}:{y}", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"],
                       capture_output=True, timeout=120, check=True)  # 2x2: 4:2:2 crops whole chroma pairs
    return np.frombuffer(p.stdout, "<u2").reshape(4, 3).astype(np.float32).mean(0) / 65535


def test_ntsc_green_in_an_hd_master_is_converted_to_bt709_primaries(tmp_path, host):
    """SMPTE-C green is not BT.709 green: in an HD master it becomes the BT.709
    colour a monitor showed (linear light, 3x3), which ffmpeg decodes back."""
    from cinescale_post.media.output_colour import convert
    from cinescale_post.testing import make_clip

    patch = np.array([0.15, 0.75, 0.15], np.float32)

    def green(_, size):
        w, h = size
        rgb = np.full((h, w, 3), 0.5, np.float32)
        rgb[:, : w // 2] = patch
        return rgb

    src = make_clip(tmp_path / "ntsc.mov", frames=2, size=(720, 480), rate=Fraction(30000, 1001),
                    codec="prores_ks", profile="hq", colour="bt601", content=green)
    out = tmp_path / "o" / "m.mov"
    p = render(host, tmp_path, src, out, codec="prores_hq", size=(1280, 720))
    assert any("primaries converted from SMPTE 170M to BT.709" in w for w in p.warnings), p.warnings
    fr = ffjudge.frame_info(out)[0]
    assert (fr["color_primaries"], fr["color_trc"], fr["color_space"]) == ("bt709",) * 3
    want = convert(patch[None, None], Colour(6, 6, 6, 1), Colour(1, 1, 1, 1))[0, 0]
    got = _ffmpeg_rgb_at(out, 300, 360)  # inside the patch: 720x480 is fitted to 1080x720, centred
    assert np.abs(got - want).max() < 0.01, (got, want)
    assert np.abs(want - patch).max() > 0.05  # the conversion is visible, not a rounding


@pytest.mark.parametrize("primaries,trc", [("auto", "bt709"), ("source", "iec61966-2-1")])
def test_an_srgb_tiff_sequence_into_a_video_master_is_bt709(tmp_path, host, primaries, trc):
    import cv2

    for n in (1001, 1002):
        cv2.imwrite(str(tmp_path / f"s.{n}.tif"), np.rint(_source_picture(64, 48) * 65535).astype(np.uint16))
    out = tmp_path / "o" / "m.mov"
    p = render(host, tmp_path, tmp_path / "s.####.tif", out, codec="prores_hq", size=(1280, 720),
               overrides=(f"output.primaries={primaries}",))
    assert p.source.colour.trc == 13
    fr = ffjudge.frame_info(out)[0]
    assert (fr["color_primaries"], fr["color_trc"], fr["color_space"]) == ("bt709", trc, "bt709")
    said = any("sRGB code values are written as BT.709 video" in w for w in p.warnings)
    assert said == (primaries == "auto")


def test_primaries_matrix_smpte_c_to_bt709():
    """The 3x3 of SMPTE 170M -> BT.709 primaries (published, e.g. in the
    colour-science package: [[0.9395, 0.0502, 0.0103], ...]); white stays white."""
    from cinescale_post.media.output_colour import convert, primaries_matrix

    m = primaries_matrix(6, 1)
    want = np.array([[0.939542, 0.050181, 0.010277], [0.017772, 0.965793, 0.016435],
                     [-0.001622, -0.004370, 1.005991]])
    assert np.abs(m - want).max() < 2e-4
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-9)
    white = np.ones((2, 2, 3), np.float32)
    out = convert(white, Colour(6, 6, 6, 1), Colour(1, 1, 1, 1))
    assert np.allclose(out, 1.0, atol=1e-5)
    green = np.zeros((1, 1, 3), np.float32)
    green[..., 1] = 1.0
    g709 = convert(green, Colour(6, 6, 6, 1), Colour(1, 1, 1, 1))[0, 0]
    assert g709[1] > 0.98 and g709[0] > 0.2  # SMPTE-C green is inside BT.709: some red mixed in


@pytest.mark.parametrize("pix_fmt,size", [("yuv422p10le", (130, 70)), ("yuv420p10le", (66, 131)),
                                          ("yuva444p10le", (64, 200))])
def test_banded_encode_is_bit_identical(pix_fmt, size):
    """The writer's banded conversion (faster, flat memory) gives the very codes
    of the whole-frame reference conversion, odd sizes and over-range included."""
    from cinescale_post.media.yuv_planes import BAND_ROWS, encode_into, fill_planes, rgb_to_planes

    w, h = size
    assert h > BAND_ROWS  # several bands
    rng = np.random.default_rng(1)
    rgb = (rng.random((h, w, 3), dtype=np.float32) * 1.2 - 0.1).astype(np.float32)
    alpha = rng.random((h, w), dtype=np.float32) if pix_fmt.startswith("yuva") else None
    base = "yuv444p10le" if alpha is not None else pix_fmt
    ref = av.VideoFrame(w, h, pix_fmt)
    planes = rgb_to_planes(rgb, base, 1, 1)
    if alpha is not None:
        planes = (*planes, np.rint(np.clip(alpha, 0, 1) * 1023).astype(np.uint16))
    fill_planes(ref, planes)
    got = av.VideoFrame(w, h, pix_fmt)
    encode_into(got, rgb, base, 1, 1, alpha)
    for a, b in zip(ref.planes, got.planes):
        assert bytes(a) == bytes(b) or np.array_equal(
            np.frombuffer(a, np.uint16).reshape(a.height, -1)[:, :a.width],
            np.frombuffer(b, np.uint16).reshape(b.height, -1)[:, :b.width])


@pytest.mark.parametrize("size,par,display", [
    ((720, 576), Fraction(16, 15), Fraction(4, 3)),  # PAL 4:3
    ((720, 576), Fraction(64, 45), Fraction(16, 9)),  # PAL 16:9
    ((720, 480), Fraction(10, 11), Fraction(720 * 10, 480 * 11)),  # NTSC 4:3 (BT.601 nominal)
    ((720, 480), Fraction(40, 33), Fraction(720 * 40, 480 * 33)),  # NTSC 16:9
    ((1440, 1080), Fraction(4, 3), Fraction(16, 9)),  # HDV
    ((2880, 2160), Fraction(4, 3), Fraction(16, 9)),  # 1.33x anamorphic
    ((2048, 1716), Fraction(9, 5), Fraction(2048 * 9, 1716 * 5)),  # 1.8x
    ((2048, 858), Fraction(2), Fraction(4096, 858)),  # 2x
])
def test_fit_is_in_display_space(size, par, display):
    from cinescale_post.pipeline.geometry import fit_geometry
    from cinescale_post.contracts.media import SourceInfo

    src = SourceInfo(path="x", kind="movie", format="mov", codec="prores", width=size[0], height=size[1],
                     pix_fmt="yuv422p10le", bit_depth=10, rate=Fraction(25), time_base=Fraction(1, 25),
                     frame_numbers=(1,), pixel_aspect=par)
    assert src.display_aspect == display
    g, _ = fit_geometry(src, 3840, 2160, "pad")
    assert abs(g.scale_w / g.scale_h - float(display)) < 2 / min(g.scale_w, g.scale_h) * float(display) + 1e-3
    assert g.pixel_aspect == 1 and (g.scale_w == 3840 or g.scale_h == 2160)
    k, _ = fit_geometry(src, 3840, 2160, "pad", "keep")
    assert k.pixel_aspect == par and abs(k.scale_w / k.scale_h - size[0] / size[1]) < 0.01
