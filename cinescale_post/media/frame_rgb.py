"""Decoded video frames to exact float R'G'B' (the movie and sequence readers' pixels).

Planar Y'CbCr is converted by our own matrix (``media.colour``): swscale is
~0.4 % off at 10-bit and decodes untagged HD as BT.601. RGB and gray frames
are read from their planes too: swscale's float output is up to 33 codes off
at 16-bit (measured here). Only what neither covers (palette, YCgCo, ICtCp...)
goes through swscale.
"""

from __future__ import annotations

import numpy as np

import cinescale_post.media.colour as col

# Packed RGB formats read without swscale: name -> (channel order, dtype).
_PACKED_RGB = {
    "rgb24": ("rgb", "u1"), "bgr24": ("bgr", "u1"),
    "rgba": ("rgba", "u1"), "bgra": ("bgra", "u1"), "argb": ("argb", "u1"), "abgr": ("abgr", "u1"),
    "rgb0": ("rgb0", "u1"), "bgr0": ("bgr0", "u1"), "0rgb": ("0rgb", "u1"), "0bgr": ("0bgr", "u1"),
    "rgb48le": ("rgb", "<u2"), "rgb48be": ("rgb", ">u2"), "bgr48le": ("bgr", "<u2"), "bgr48be": ("bgr", ">u2"),
    "rgba64le": ("rgba", "<u2"), "rgba64be": ("rgba", ">u2"),
    "bgra64le": ("bgra", "<u2"), "bgra64be": ("bgra", ">u2"),
}


def _plane_array(plane, dtype: str, width: int) -> np.ndarray:
    """(height, width) view of an FFmpeg plane, honouring its row stride.

    Rows are ``line_size`` bytes, padded for SIMD alignment, so the buffer is
    (height, line_size / itemsize); the padding is cut off here.
    """
    dt = np.dtype(dtype)
    rows = np.frombuffer(plane, dt, count=plane.height * (plane.line_size // dt.itemsize))
    return rows.reshape(plane.height, plane.line_size // dt.itemsize)[:, :width]


def _int_dtype(bits: int, big_endian: bool) -> str:
    return "u1" if bits <= 8 else (">u2" if big_endian else "<u2")


def is_ycbcr(fmt) -> bool:
    """True for Y'CbCr pixel formats (the matrix matters), False for RGB, gray, palette."""
    return not fmt.is_rgb and not fmt.has_palette and len(fmt.components) >= 3


def _subsampled_layout(fmt) -> str | None:
    """'444', '422', '420' (or None) for a Y'CbCr format, from its plane sizes."""
    luma, chroma = fmt.components[0], fmt.components[1]
    if chroma.width == luma.width and chroma.height == luma.height:
        return "444"
    if chroma.height == luma.height and chroma.width == -(-luma.width // 2):
        return "422"
    if chroma.height == -(-luma.height // 2) and chroma.width == -(-luma.width // 2):
        return "420"
    return None


def _ycbcr_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(Y', Cb, Cr, bits) code-value planes of a Y'CbCr frame, without swscale
    conversions that touch values (packed 4:2:2 is only repacked)."""
    fmt = frame.format
    comps = fmt.components
    bits = comps[0].bits
    planes = [c.plane for c in comps[:3]]
    dt = _int_dtype(bits, fmt.is_big_endian)
    if len(set(planes)) == 3:  # planar: yuv*p*, yuvj*p, yuva*p*
        y, cb, cr = (_plane_array(frame.planes[p], dt, c.width) for p, c in zip(planes, comps[:3]))
        return y, cb, cr, bits
    if planes[1] == planes[2] and planes[0] != planes[1]:  # semi-planar: nv12, p010 (hardware decoders)
        cw = comps[1].width
        y = _plane_array(frame.planes[0], dt, comps[0].width)
        uv = _plane_array(frame.planes[1], dt, 2 * cw).reshape(-1, cw, 2)
        if bits > 8 and bits < 16:  # P010/P012 keep the value in the high bits
            shift = 16 - bits
            y, uv = y >> shift, uv >> shift
        cb, cr = (uv[..., 1], uv[..., 0]) if fmt.name.startswith(("nv21", "nv42")) else (uv[..., 0], uv[..., 1])
        return y, cb, cr, bits
    # Packed (yuyv422, uyvy422, y210...): swscale repacks to planar of the
    # same depth and subsampling exactly (checked), then the planar path.
    layout = _subsampled_layout(fmt)
    if layout is None:
        raise ValueError(f"unsupported Y'CbCr layout {fmt.name}")
    depth = "" if bits <= 8 else ("10le" if bits <= 10 else "12le" if bits <= 12 else "16le")
    return _ycbcr_planes(frame.reformat(format=f"yuv{layout}p{depth}"))


def _rgb_planes(frame) -> np.ndarray | None:
    """(H, W, 3) float32 from an RGB or gray frame read directly, or None."""
    fmt = frame.format
    comps = fmt.components
    name = fmt.name
    if name in _PACKED_RGB:
        order, dt = _PACKED_RGB[name]
        nch = len(order)
        raw = _plane_array(frame.planes[0], dt, frame.width * nch).reshape(frame.height, frame.width, nch)
        rgb = raw[..., [order.index(c) for c in "rgb"]].astype(np.float32)
        return rgb / np.float32(255.0 if dt == "u1" else 65535.0)
    is_float = "f32" in name or "f16" in name
    if fmt.is_rgb and fmt.is_planar:  # gbrp*, gbrap*, gbrpf32*: components are R, G, B
        bits = comps[0].bits
        dt = (">" if fmt.is_big_endian else "<") + ("f4" if bits == 32 else "f2") if is_float \
            else _int_dtype(bits, fmt.is_big_endian)
        chans = [_plane_array(frame.planes[c.plane], dt, c.width) for c in comps[:3]]
        rgb = np.stack(chans, axis=-1).astype(np.float32)
        return rgb if is_float else rgb / np.float32((1 << bits) - 1)
    if not fmt.is_rgb and len(comps) in (1, 2) and not fmt.has_palette and fmt.is_planar:  # gray, ya
        c = comps[0]
        dt = ("<f4" if not fmt.is_big_endian else ">f4") if is_float else _int_dtype(c.bits, fmt.is_big_endian)
        v = _plane_array(frame.planes[c.plane], dt, c.width).astype(np.float32)
        if not is_float:
            v = v / np.float32((1 << c.bits) - 1)
        return np.repeat(v[..., None], 3, axis=-1)
    return None


def frame_to_rgb(frame, *, matrix: int | None = None, range: int | None = None) -> np.ndarray:
    """Decode an ``av.VideoFrame`` to (H, W, 3) float32 R'G'B' at full precision.

    Args:
        frame: any decoded video frame.
        matrix, range: AVCOL codes to use for Y'CbCr; None resolves them from
            the frame's tags (``colour.resolve_matrix`` / ``resolve_range``).
    Returns:
        float32 RGB; video values are not clipped (super-whites stay > 1.0).

    Y'CbCr goes through ``colour.ycbcr_to_rgb`` (exact); RGB/gray are read
    from their planes; anything else (palette...) through swscale rgb48le.
    """
    fmt = frame.format
    if is_ycbcr(fmt):
        tag = frame.colorspace
        if matrix is None:
            if tag not in (0, col.UNSPECIFIED) and not col.supported_matrix(tag):
                return _swscale_rgb(frame)  # YCgCo, ICtCp...: let FFmpeg do what it knows
            matrix = col.resolve_matrix(tag, frame.height)[0]
        if not col.supported_matrix(matrix):
            return _swscale_rgb(frame)
        if range is None:
            range = col.RANGE_FULL if fmt.name.startswith("yuvj") else col.resolve_range(frame.color_range)
        y, cb, cr, bits = _ycbcr_planes(frame)
        return col.ycbcr_to_rgb(y, cb, cr, matrix=matrix, range=range, bits=bits)
    rgb = _rgb_planes(frame)
    return rgb if rgb is not None else _swscale_rgb(frame)


def _swscale_rgb(frame) -> np.ndarray:
    # rgb48le, not gbrpf32le: swscale's float path is the less precise one.
    return frame.to_ndarray(format="rgb48le").astype(np.float32) / np.float32(65535.0)
