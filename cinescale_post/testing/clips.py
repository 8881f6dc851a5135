"""Tiny movie clips with known pixels, written with PyAV from numpy.

Y'CbCr clips are encoded from known R'G'B' with our own exact matrix
(``media.colour.rgb_to_ycbcr``), never through swscale, whose 10-bit
conversion is ~0.4 % off (reference/MEDIA_IO.md section 2.3): a reader that
decodes exactly gets back the code values we wrote.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from cinescale_post.testing.pixels import Content, clip_rgb, vfr_pts

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


def fill_plane(plane, values: np.ndarray) -> None:
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
        fill_plane(plane, values.astype(dtype))
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
