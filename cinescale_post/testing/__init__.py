"""Media factories for tests: tiny clips and image sequences with known pixels.

Tests of cinescale-post, and of third-party plugins, import these to build
their inputs on the fly instead of shipping media. Everything is written with
PyAV / OpenEXR / OpenCV from numpy, and the pixel truth is available to the
caller (``clip_rgb``, ``sequence_rgb``), so decode accuracy can be checked.

Y'CbCr clips are encoded from known R'G'B' with our own exact matrix
(``media.colour.rgb_to_ycbcr``), never through swscale, whose 10-bit
conversion is ~0.4 % off (reference/MEDIA_IO.md section 2.3): a reader that
decodes exactly gets back the code values we wrote.

Each factory is self-contained (other factories may be added below).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "make_clip",
    "make_sequence",
    "clip_rgb",
    "index_rgb",
    "read_index",
    "sequence_rgb",
    "vfr_pts",
    "COLOUR_TAGS",
]

# (primaries, trc, matrix) in FFmpeg AVCOL_* numbering, per ``colour=`` name.
COLOUR_TAGS = {
    "bt709": (1, 1, 1),
    "bt601": (6, 6, 6),  # SMPTE 170M (NTSC)
    "bt601-625": (5, 6, 5),  # BT.470BG (PAL)
    "bt2020": (9, 14, 9),
}

# Pixel format a codec gets when ``pix_fmt`` is not given.
_DEFAULT_PIX_FMT = {
    "prores_ks": "yuv422p10le",
    "prores_aw": "yuv422p10le",
    "dnxhd": "yuv422p10le",
    "libx264": "yuv420p",
    "libx265": "yuv420p10le",
    "ffv1": "yuv422p10le",
    "mjpeg": "yuvj420p",
    "libsvtav1": "yuv420p10le",
}

# Index content: a grid of black/white cells, one bit each (4 x 3 = 12 bits).
_INDEX_GRID = (4, 3)

Content = str | Callable[[int, tuple[int, int]], np.ndarray]


# ---------------------------------------------------------------- pixel truth


def index_rgb(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``index`` burned in as a 4 x 3 grid of black/white cells.

    Cell ``k`` (row-major from the top left) is white when bit ``k`` of
    ``index`` is set. Cells are large and hard-edged, so the value survives
    lossy long-GOP coding. Returns (H, W, 3) float32 in [0, 1].
    """
    w, h = size
    cols, rows = _INDEX_GRID
    if index >= 1 << (cols * rows):
        raise ValueError(f"index {index} does not fit in {cols * rows} bits")
    out = np.zeros((h, w, 3), np.float32)
    for k in range(cols * rows):
        if index >> k & 1:
            r, c = divmod(k, cols)
            out[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = 1.0
    return out


def read_index(rgb: np.ndarray) -> int:
    """Inverse of :func:`index_rgb`: the frame index a decoded (H, W, 3) frame shows.

    Reads the middle half of each cell, so chroma bleed and ringing at the
    cell edges do not matter.
    """
    h, w = rgb.shape[:2]
    cols, rows = _INDEX_GRID
    luma = rgb.mean(axis=-1)
    value = 0
    for k in range(cols * rows):
        r, c = divmod(k, cols)
        y0, y1 = r * h // rows, (r + 1) * h // rows
        x0, x1 = c * w // cols, (c + 1) * w // cols
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if luma[y0 + dy:y1 - dy, x0 + dx:x1 - dx].mean() > 0.5:
            value |= 1 << k
    return value


def clip_rgb(content: Content, index: int, size: tuple[int, int]) -> np.ndarray:
    """The R'G'B' truth of frame ``index`` of a clip: (H, W, 3) float32 in [0, 1].

    ``content``: "gradient" (a horizontal red ramp that moves one step per
    frame, a vertical green ramp, blue constant), "index" (see
    :func:`index_rgb`) or a callable ``(index, (w, h)) -> (H, W, 3)``.
    """
    w, h = size
    if callable(content):
        rgb = np.asarray(content(index, size), np.float32)
        if rgb.shape != (h, w, 3):
            raise ValueError(f"content returned shape {rgb.shape}, expected {(h, w, 3)}")
        return rgb
    if content == "index":
        return index_rgb(index, size)
    if content == "gradient":
        x = (np.arange(w, dtype=np.float32) + index) % w / max(w - 1, 1)
        y = np.arange(h, dtype=np.float32) / max(h - 1, 1)
        rgb = np.empty((h, w, 3), np.float32)
        rgb[..., 0] = x[None, :]
        rgb[..., 1] = y[:, None]
        rgb[..., 2] = 0.25
        return rgb
    raise ValueError(f"content must be 'gradient', 'index' or a callable, not {content!r}")


def vfr_pts(frames: int, rate: Fraction) -> tuple[list[int], Fraction]:
    """Variable-rate timestamps used by ``make_clip(vfr=True)``.

    Returns ``(pts, time_base)``: the time base is ``1/(4 * rate.numerator)``
    (so the nominal step is ``4 * rate.denominator`` ticks) and frame
    durations cycle through 0.5, 0.75, 1 and 1.5 nominal steps.
    """
    rate = Fraction(rate)
    tb = Fraction(1, 4 * rate.numerator)
    steps = [2 * rate.denominator, 3 * rate.denominator, 4 * rate.denominator, 6 * rate.denominator]
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += steps[i % len(steps)]
    return pts, tb


# ---------------------------------------------------------------- movies


def _yuv_layout(pix_fmt: str, size: tuple[int, int]) -> tuple[int, str, bool] | None:
    """(bits, subsampling, full_range_by_name) of a planar Y'CbCr format, else None."""
    import av

    fmt = av.VideoFormat(pix_fmt, *size)
    comps = fmt.components
    if fmt.is_rgb or len(comps) < 3 or fmt.has_palette:
        return None
    if len({c.plane for c in comps[:3]}) != 3 or fmt.is_big_endian:
        raise ValueError(f"make_clip writes planar little-endian Y'CbCr or RGB formats, not {pix_fmt}")
    luma, chroma = comps[0], comps[1]
    if chroma.width == luma.width and chroma.height == luma.height:
        sub = "444"
    elif chroma.height == luma.height:
        sub = "422"
    elif chroma.height * 2 >= luma.height and chroma.width * 2 >= luma.width:
        sub = "420"
    else:
        raise ValueError(f"make_clip does not write {pix_fmt} (chroma layout)")
    return luma.bits, sub, pix_fmt.startswith("yuvj")


def _fill_plane(plane, values: np.ndarray) -> None:
    """Copy a (h, w) array into an FFmpeg plane whose rows are ``line_size`` bytes
    (rows are padded for alignment, so a plain ``update(values)`` would shear)."""
    values = np.ascontiguousarray(values)
    per_row = plane.line_size // values.itemsize
    buf = np.zeros((plane.height, per_row), values.dtype)
    buf[: values.shape[0], : values.shape[1]] = values
    plane.update(buf.tobytes())


def _video_frame(rgb: np.ndarray, pix_fmt: str, matrix: int, full: bool):
    import av

    from cinescale_post.media.colour import RANGE_FULL, RANGE_LIMITED, rgb_to_ycbcr

    h, w = rgb.shape[:2]
    layout = _yuv_layout(pix_fmt, (w, h))
    if layout is None:  # RGB family: no matrix involved, swscale only repacks
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, np.float32),
                                          format="gbrpf32le").reformat(format=pix_fmt)
    bits, sub, full_by_name = layout
    planes = rgb_to_ycbcr(rgb, matrix=matrix, range=RANGE_FULL if (full or full_by_name) else RANGE_LIMITED,
                          bits=bits, subsampling=sub)
    frame = av.VideoFrame(w, h, pix_fmt)
    dtype = np.uint8 if bits <= 8 else np.uint16
    for plane, values in zip(frame.planes, planes):
        _fill_plane(plane, values.astype(dtype))
    return frame


def _audio_writer(out, codec: str, rate: Fraction):
    """Stereo 48 kHz 440 Hz sine; returns ``feed(seconds, final)`` that encodes up to a time."""
    import av

    astream = out.add_stream(codec, rate=48000, layout="stereo")
    ctx = astream.codec_context
    sample_fmt = ctx.format.name
    chunk = ctx.frame_size or 1024
    state = {"done": 0}

    def feed(until_s: Fraction, final: bool = False) -> None:
        stop = int(until_s * 48000)
        while state["done"] < stop:
            n = min(chunk, stop - state["done"])
            if ctx.frame_size and n < chunk and not final:
                break  # fixed-size codecs (AAC) take full frames until the last
            t = (state["done"] + np.arange(n)) / 48000.0
            wave = 0.1 * np.sin(2 * np.pi * 440.0 * t)
            if sample_fmt == "s32":
                data = np.repeat((wave * 2**31).astype(np.int32), 2)[None, :]
            elif sample_fmt == "s16":
                data = np.repeat((wave * 2**15).astype(np.int16), 2)[None, :]
            elif sample_fmt == "fltp":
                data = np.stack([wave, wave]).astype(np.float32)
            elif sample_fmt == "flt":
                data = np.repeat(wave.astype(np.float32), 2)[None, :]
            else:
                raise ValueError(f"make_clip cannot feed audio sample format {sample_fmt}")
            frame = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout="stereo")
            frame.sample_rate = 48000
            frame.pts = state["done"]
            frame.time_base = Fraction(1, 48000)
            for packet in astream.encode(frame):
                out.mux(packet)
            state["done"] += n
        if final:
            for packet in astream.encode(None):
                out.mux(packet)

    return feed


def make_clip(
    path: str | os.PathLike,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    rate: Fraction | int | str = Fraction(24),
    codec: str = "prores_ks",
    profile: str | None = None,
    pix_fmt: str | None = None,
    colour: str | None = "bt709",
    full_range: bool = False,
    audio: str | None = None,
    timecode: str | None = None,
    rotation: int = 0,
    content: Content = "gradient",
    vfr: bool = False,
    gop: int | None = None,
    bframes: int | None = None,
    options: dict | None = None,
    container_format: str | None = None,
    container_options: dict | None = None,
) -> Path:
    """Write a small clip with PyAV and return its path.

    Args:
        path: output file; the suffix picks the container (``.mov``,
            ``.mp4``, ``.mkv``, ``.mxf``...) unless ``container_format``.
        frames, size, rate: frame count, (width, height), frame rate
            (``Fraction(24000, 1001)`` for 23.976).
        codec, profile, pix_fmt: encoder name, its profile option (e.g.
            ``"hq"`` for prores_ks, ``"dnxhr_hqx"`` for dnxhd) and pixel
            format (default per codec: ProRes yuv422p10le, H.264 yuv420p...).
        colour: tag set from :data:`COLOUR_TAGS`, or None to leave the
            stream untagged (pixels are then encoded with the matrix a reader
            must assume: BT.709 above 576 lines, BT.601 otherwise).
        full_range: encode and tag full range (``yuvj*`` formats always are).
        audio: None, or an audio codec (``"pcm_s24le"``, ``"aac"``) for a
            stereo 48 kHz sine as long as the video.
        timecode: start timecode written to the container and video stream
            (MOV/MP4 then carry a ``tmcd`` track; MXF keeps it in the header).
        rotation: display-matrix rotation in degrees (counter-clockwise).
        content: see :func:`clip_rgb`; ``"index"`` burns the frame index in.
        vfr: use the variable timestamps of :func:`vfr_pts`.
        gop, bframes: key-frame interval and B-frames (long-GOP codecs).
        options, container_options: extra encoder / muxer options.
    """
    import av

    path = Path(path)
    rate = Fraction(rate)
    w, h = size
    pix_fmt = pix_fmt or _DEFAULT_PIX_FMT.get(codec) or av.Codec(codec, "w").video_formats[0].name
    opts = dict(options or {})
    if profile is None and codec == "dnxhd":
        profile = "dnxhr_hqx" if "10" in pix_fmt else "dnxhr_hq"
    if profile is not None:
        opts.setdefault("profile", str(profile))
    if codec in ("libx264", "libx265"):
        opts.setdefault("crf", "12")
        params = []
        if gop is not None:
            params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if bframes is not None:
            params.append(f"bframes={bframes}")
        if params:
            opts.setdefault(f"{codec[3:]}-params", ":".join(params))
    if colour is not None and colour not in COLOUR_TAGS:
        raise ValueError(f"colour must be one of {sorted(COLOUR_TAGS)} or None, not {colour!r}")
    if colour is None:
        from cinescale_post.media.colour import resolve_matrix

        matrix = resolve_matrix(None, h)[0]
    else:
        matrix = COLOUR_TAGS[colour][2]
    full = full_range or pix_fmt.startswith("yuvj")

    if vfr:
        pts_list, time_base = vfr_pts(frames, rate)
    else:
        pts_list, time_base = list(range(frames)), 1 / rate

    out = av.open(str(path), "w", format=container_format, options=container_options or {})
    try:
        vstream = out.add_stream(codec, rate=rate, options=opts)
        vstream.width, vstream.height, vstream.pix_fmt = w, h, pix_fmt
        ctx = vstream.codec_context
        if vfr:
            # Keep the VFR clock on codec and stream; a rate-derived codec time
            # base collides pts and mux() fails (MEDIA_IO.md section 2.4).
            ctx.time_base = time_base
            vstream.time_base = time_base
        if gop is not None:
            ctx.gop_size = gop
        if bframes is not None:
            ctx.max_b_frames = bframes
        tags = COLOUR_TAGS.get(colour) if colour else None
        if tags:
            ctx.color_primaries, ctx.color_trc, ctx.colorspace = tags
        if tags or full:
            ctx.color_range = 2 if full else 1
        if timecode:
            vstream.metadata["timecode"] = timecode
            out.metadata["timecode"] = timecode
        if rotation:
            vstream.set_display_rotation(rotation)
        feed_audio = _audio_writer(out, audio, rate) if audio else None

        for i in range(frames):
            frame = _video_frame(clip_rgb(content, i, size), pix_fmt, matrix, full)
            if tags:
                frame.color_primaries, frame.color_trc, frame.colorspace = tags
            if tags or full:
                frame.color_range = 2 if full else 1
            # An explicit time_base on every frame: without it PyAV writes pts 0
            # for every packet (MEDIA_IO.md pitfall 3).
            frame.pts = pts_list[i]
            frame.time_base = time_base
            for packet in vstream.encode(frame):
                out.mux(packet)
            if feed_audio:
                feed_audio(Fraction(pts_list[i]) * time_base + 1 / rate)
        for packet in vstream.encode(None):
            out.mux(packet)
        if feed_audio:
            end = Fraction(pts_list[-1]) * time_base + 1 / rate if frames else Fraction(0)
            feed_audio(end, final=True)
    finally:
        out.close()
    return path


# ---------------------------------------------------------------- sequences


def sequence_rgb(number: int, size: tuple[int, int], kind: str = "exr") -> np.ndarray:
    """The value written for frame ``number`` by :func:`make_sequence`, before
    quantisation: (H, W, 3) float32.

    EXR frames are scene-linear-like (from -0.25 to 3.0, so readers must not
    clip); PNG/TIFF/DPX frames are in [0, 1]. Every frame differs.
    """
    w, h = size
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    phase = (number % 97) / 97.0
    rgb = np.empty((h, w, 3), np.float32)
    rgb[..., 0] = x
    rgb[..., 1] = y
    rgb[..., 2] = (x * y + phase) % 1.0
    if kind == "exr":
        rgb = rgb * 3.25 - 0.25
    return rgb


def make_sequence(
    pattern: str | os.PathLike,
    numbers: Iterable[int],
    *,
    size: tuple[int, int] = (64, 48),
    kind: str | None = None,
    half: bool = True,
    bits: int = 16,
    skip: Iterable[int] = (),
    rate: Fraction | None = None,
    timecode: str | None = None,
) -> list[Path]:
    """Write one image per frame number to a pattern such as ``dir/sh010_v001.####.exr``.

    Args:
        pattern: any spelling ``media.sequence.parse_pattern`` accepts.
        numbers: frame numbers to write; ``skip`` leaves some out (gaps).
        kind: "exr", "png", "tiff" or "dpx"; default from the suffix.
        half: EXR pixel type (float16 if True, else float32).
        bits: PNG/TIFF sample depth, 8 or 16 (DPX is always 10-bit).
        rate, timecode: EXR ``framesPerSecond`` / ``timeCode`` attributes
            (timecode of the first written frame, ``"HH:MM:SS:FF"``).
    Returns:
        The written paths. Pixels: :func:`sequence_rgb`, quantised to the
        file's type (half; ``rint(v * 65535) / 65535`` for 16-bit PNG/TIFF;
        ``rint(v * 1023) / 1023`` for DPX).
    """
    from cinescale_post.media.sequence import parse_pattern

    seq = parse_pattern(str(pattern))
    if seq is None:
        raise ValueError(f"{pattern} has no frame token (####, %04d, @@@@, $F4)")
    kind = kind or {".tif": "tiff"}.get(seq.suffix, seq.suffix.lstrip("."))
    os.makedirs(seq.directory or ".", exist_ok=True)
    skip = set(skip)
    written = []
    for k, number in enumerate(n for n in numbers if n not in skip):
        target = Path(seq.path(number))
        rgb = sequence_rgb(number, size, kind)
        if kind == "exr":
            _write_exr(target, rgb, half=half, rate=rate, timecode=timecode, offset=k)
        elif kind in ("png", "tiff"):
            import cv2

            scale = 65535 if bits == 16 else 255
            codes = np.rint(np.clip(rgb, 0, 1) * scale).astype(np.uint16 if bits == 16 else np.uint8)
            if not cv2.imwrite(str(target), np.ascontiguousarray(codes[..., ::-1])):
                raise OSError(f"OpenCV could not write {target}")
        elif kind == "dpx":
            _write_dpx(target, rgb)
        else:
            raise ValueError(f"kind must be exr, png, tiff or dpx, not {kind!r}")
        written.append(target)
    return written


def _write_exr(target: Path, rgb: np.ndarray, *, half: bool, rate, timecode, offset: int) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    if rate is not None:
        header["framesPerSecond"] = Fraction(rate)
    if timecode is not None:
        hh, mm, ss, ff = (int(p) for p in timecode.replace(";", ":").split(":"))
        fps = round(Fraction(rate or 24))
        total = ((hh * 60 + mm) * 60 + ss) * fps + ff + offset  # non-drop arithmetic
        tc = OpenEXR.TimeCode()
        tc.hours, rem = divmod(total, 3600 * fps)
        tc.minutes, rem = divmod(rem, 60 * fps)
        tc.seconds, tc.frame = divmod(rem, fps)
        header["timeCode"] = tc
    pixels = rgb.astype(np.float16 if half else np.float32)
    with OpenEXR.File(header, {"RGB": pixels}) as f:
        f.write(str(target))


def _write_dpx(target: Path, rgb: np.ndarray) -> None:
    """10-bit DPX through PyAV's encoder (one packet is one complete file).

    Codes are ``rint(rgb * 1023)``, filled into the planes directly: swscale's
    float -> 10-bit path is up to ~2 codes off.
    """
    import av

    h, w = rgb.shape[:2]
    codes = np.rint(np.clip(rgb, 0, 1) * 1023).astype(np.uint16)
    frame = av.VideoFrame(w, h, "gbrp10le")
    for plane, channel in zip(frame.planes, (1, 2, 0)):  # plane order G, B, R
        _fill_plane(plane, codes[..., channel])
    ctx = av.CodecContext.create("dpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "gbrp10le"
    ctx.time_base = Fraction(1, 24)
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    target.write_bytes(data)


def _main(argv: list[str] | None = None) -> None:
    """``python -m cinescale_post.testing sample OUT.mov``: the demo clip
    (1 s, 960x540, 23.976 fps ProRes 422 HQ, 24-bit PCM audio, timecode
    01:00:00:00)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "sample":
        raise SystemExit("usage: python -m cinescale_post.testing sample OUT.mov")
    out = make_clip(args[1], frames=24, size=(960, 540), rate=Fraction(24000, 1001), codec="prores_ks",
                    profile="hq", audio="pcm_s24le", timecode="01:00:00:00", content="gradient")
    print(f"sample clip: {out}")


# ---------------------------------------------------------------- plugin authors' kit
#
# A fresh, isolated plugin host; a plan-like object for driving a backend
# without the CLI; and the backend conformance suite (module
# ``testing.conformance``). ``testing.tiny`` builds the tiny SD 1.5-layout
# model of the template plugin; the SDXL and Wan plugins ship theirs
# (``cinescale_sdxl.tiny``, ``cinescale_wan.tiny``); deterministic stand-in
# backends are in ``testing.backends``; pytest fixtures in ``testing.pytest_plugin``.


def fresh_host(*plugins, entrypoints: bool = False, env: dict | None = None):
    """A new :class:`~cinescale_post.pipeline.host.Host` with the built-ins plus
    ``plugins`` (modules or objects with ``@hookimpl`` functions), registered
    directly, as ``cinescale`` would register entry points. Installed entry
    points are ignored unless ``entrypoints=True`` (then ``env`` stands in
    for the environment, e.g. ``{"CINESCALE_LOAD_PLUGINS": "example"}``).

    Example::

        from cinescale_example import plugin
        host = fresh_host(plugin)
        backend = host.backend("example-sd15")   # a render driver around the adapter, as in a render
    """
    from cinescale_post.pipeline.host import Host

    return Host(load_entrypoints=entrypoints, extra_plugins=tuple(plugins), env={} if env is None else env)


def make_test_plan(backend, *, model: str | None = None, stages=(), options: dict | None = None,
                   size: tuple[int, int] = (128, 128), mode: str = "render", prompt: str = "a photo of the cat",
                   negative_prompt: str = "blurry", dtype: str = "float32", device: str = "cpu", seed: int = 7,
                   frames: tuple[int, ...] = (1001,), source=None):
    """A plan-like object for ``backend.load(plan)``, ``render`` and
    ``generate`` without probing media or the CLI: the attributes a real
    :class:`~cinescale_post.pipeline.plan.Plan` has that backends read, with
    ``stages``/``options`` normalised by ``backend.validate`` (so a bad value
    raises ``PlanError`` here, as in ``plan.build``). ``size`` is the output
    (width, height)."""
    from types import SimpleNamespace

    st, opts = backend.validate(stages=tuple(stages), options=dict(options or {}), size=tuple(size), source=source)
    return SimpleNamespace(
        backend=backend.id, model=model, device=device, dtype=dtype, seed=seed, stages=tuple(st),
        backend_options=opts, output=SimpleNamespace(width=int(size[0]), height=int(size[1])), prompt=prompt,
        negative_prompt=negative_prompt, mode=mode, frames=tuple(frames), source=source, handles=0,
        window=SimpleNamespace(size=1, overlap=0, blend="linear"))


def model_driver(model, *, adapter_id: str = "test-model", tasks=("t2i", "v2v"), family: str = "unet",
                 layout: str = "image", plan=None, stages=None, options=None, **capabilities):
    """The core render driver around an already built :class:`~cinescale_post.api.Model`
    (tests, benchmarks): a throwaway adapter whose ``load`` returns ``model``,
    with the given declared capabilities; ``plan``/``stages``/``options`` as
    :meth:`~cinescale_post.render.driver.RenderDriver.use`."""
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.contracts.model import Capabilities, ModelAdapter
    from cinescale_post.render.driver import RenderDriver

    caps = Capabilities(tasks=frozenset(tasks), family=family, latent_layout=layout, **capabilities)

    class _Adapter(ModelAdapter):
        id = adapter_id
        capabilities = caps

        def load(self, plan):
            return model

    return RenderDriver(_Adapter(), resolve=builtin_resolve).use(model, plan, stages=stages, options=options)


def adapter_driver(adapter, *, resolve=None):
    """A new core render driver around a registered-style ``adapter`` (what
    ``Host.backend`` gives a render), optionally with an upscaler/fusion
    ``resolve(kind, name)`` lookup (default: the built-ins)."""
    from cinescale_post.builtin.lookup import builtin_resolve
    from cinescale_post.render.driver import RenderDriver

    return RenderDriver(adapter, resolve=resolve or builtin_resolve)


__all__ += ["adapter_driver", "model_driver"]


from cinescale_post.testing.conformance import (  # noqa: E402 - the kit's second half, re-exported
    ConformanceError,
    ConformanceReport,
    gradient_frames,
    run_backend_conformance,
)

__all__ += ["ConformanceError", "ConformanceReport", "fresh_host", "gradient_frames", "make_test_plan",
            "run_backend_conformance"]
