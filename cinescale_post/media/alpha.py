"""Alpha: reading it from decoded frames, the two associations, and the rules
of which outputs keep it.

How alpha travels through a render (the model sees RGB only):

1. The reader delivers ``Frame.rgb`` as stored and ``Frame.alpha`` (H, W)
   float32 in [0, 1]; ``SourceInfo.alpha`` says how the file associates them:
   EXR is *premultiplied* (the OpenEXR convention: colour already multiplied
   by coverage), ProRes 4444, PNG and TIFF are *straight* (colour independent
   of coverage; PNG mandates it, QuickTime/ProRes and 16-bit TIFF from
   OpenCV/libtiff store it so). ``[input] alpha`` overrides the guess.
2. The render driver hands the model the picture *premultiplied* -- what the
   image looks like over black -- because filtering and resampling are only
   correct on premultiplied values (straight colour under zero alpha is
   arbitrary, and a resize would bleed it into the edges).
3. Alpha is resampled to the picture's size with the same geometry (rotation,
   fit, pad/crop: padded bars are transparent), by Lanczos clipped to [0, 1].
4. Writers get premultiplied colour plus alpha; a writer of straight alpha
   divides by it (:func:`unpremultiply`). In both conventions colour under
   alpha below 1/1024 is set to 0: a model paints there from the black it was
   shown (not the plate's), and division would only amplify that noise. (So
   emissive colour under zero alpha in a CG EXR is not kept.)

Outputs: EXR (premultiplied), ProRes 4444 / 4444 XQ (straight), PNG16 and
TIFF16 (straight) keep alpha. Every other codec drops it, and the plan says so
in a warning that the manifest records.
"""

from __future__ import annotations

import numpy as np

#: ``[input] alpha``: how to read the source's alpha.
INPUT_MODES = ("auto", "premultiplied", "straight", "ignore")
#: ``[output] alpha``: "auto" keeps alpha where the codec holds it, in the codec's
#: convention; "premultiplied"/"straight" force the association; "drop" never writes it.
OUTPUT_MODES = ("auto", "premultiplied", "straight", "drop")

#: codec -> the association its files use by convention.
CONVENTIONS = {
    "exr": "premultiplied",
    "prores_4444": "straight",
    "prores_4444xq": "straight",
    "png16": "straight",
    "tiff16": "straight",
}

_EPS = 1.0 / 1024.0


def codec_alpha(codec: str) -> str:
    """The association ``codec`` stores alpha in, or "" when it cannot hold alpha."""
    return CONVENTIONS.get(codec, "")


def frame_alpha(frame) -> np.ndarray | None:
    """(H, W) float32 alpha of an ``av.VideoFrame``, or None when it has none.

    Reads the alpha plane directly (yuva*, gbrap*, ya*, packed rgba/argb...):
    no swscale, full precision (ProRes 4444 decodes to 12/16-bit alpha).
    """
    fmt = frame.format
    comps = fmt.components
    name = fmt.name
    packed = {"rgba": 3, "bgra": 3, "argb": 0, "abgr": 0, "rgba64le": 3, "rgba64be": 3,
              "bgra64le": 3, "bgra64be": 3}
    if name in packed:
        wide = "64" in name
        dt = np.dtype((">" if name.endswith("be") else "<") + "u2") if wide else np.dtype("u1")
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dt, count=plane.height * (plane.line_size // dt.itemsize))
        px = rows.reshape(plane.height, -1)[:, :frame.width * 4].reshape(frame.height, frame.width, 4)
        return px[..., packed[name]].astype(np.float32) / np.float32(65535.0 if wide else 255.0)
    has_alpha = (len(comps) == 4 and not fmt.has_palette) or (len(comps) == 2 and not fmt.is_rgb)
    if not has_alpha or not fmt.is_planar:
        return None
    a = comps[-1]
    plane = frame.planes[a.plane]
    is_float = "f32" in name or "f16" in name
    if is_float:
        dt = np.dtype((">" if fmt.is_big_endian else "<") + ("f4" if a.bits == 32 else "f2"))
    else:
        dt = np.dtype("u1") if a.bits <= 8 else np.dtype((">" if fmt.is_big_endian else "<") + "u2")
    rows = np.frombuffer(plane, dt, count=plane.height * (plane.line_size // dt.itemsize))
    v = rows.reshape(plane.height, plane.line_size // dt.itemsize)[:, :a.width].astype(np.float32)
    return v if is_float else v / np.float32((1 << a.bits) - 1)


def to_codes(alpha: np.ndarray, bits: int = 10) -> np.ndarray:
    """(H, W) alpha in [0, 1] -> uint16 full-range code values (0 .. 2**bits - 1)."""
    top = (1 << bits) - 1
    return np.rint(np.clip(np.asarray(alpha, np.float32), 0.0, 1.0) * top).astype(np.uint16)


def premultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) straight colour x (H, W) alpha -> premultiplied (H, W, 3) float32."""
    return (np.asarray(rgb, np.float32) * np.asarray(alpha, np.float32)[..., None]).astype(np.float32)


def unpremultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied (H, W, 3) / (H, W) alpha -> straight colour, float32.

    Where alpha < 1/1024 the colour is 0: dividing there only amplifies noise
    (a model's output under near-zero coverage), and it is invisible anyway.
    """
    a = np.asarray(alpha, np.float32)[..., None]
    safe = np.where(a >= _EPS, a, np.float32(1.0))
    return np.where(a >= _EPS, np.asarray(rgb, np.float32) / safe, np.float32(0.0)).astype(np.float32)


def clear_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied (H, W, 3) with the colour under alpha < 1/1024 set to 0."""
    keep = np.asarray(alpha, np.float32)[..., None] >= _EPS
    return np.where(keep, np.asarray(rgb, np.float32), np.float32(0.0)).astype(np.float32)


def resample(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) alpha -> ``size`` = (width, height), Lanczos (area when shrinking
    both axes, like the draft upscaler), clipped to [0, 1]."""
    import cv2

    w, h = size
    a = np.asarray(alpha, np.float32)
    if a.shape == (h, w):
        return a
    flag = cv2.INTER_AREA if (w < a.shape[1] and h < a.shape[0]) else cv2.INTER_LANCZOS4
    return np.clip(cv2.resize(a, (w, h), interpolation=flag), 0.0, 1.0).astype(np.float32)


def resolve(source_alpha: str, input_mode: str, codec: str, output_mode: str) -> tuple[str, str, str | None]:
    """(how to read the source's alpha, how to write it, warning or None).

    ``source_alpha``: ``SourceInfo.alpha`` ("" when the source has none).
    Returns "" for "no alpha" on either side. Raises ValueError for a forced
    association the codec cannot store (the plan turns it into a PlanError).
    """
    if not source_alpha or input_mode == "ignore":
        return "", "", None
    read = source_alpha if input_mode == "auto" else input_mode
    if output_mode == "drop":
        return read, "", None
    conv = codec_alpha(codec)
    if not conv:
        return read, "", (f"the source has alpha but {codec} cannot hold it: alpha is dropped "
                          "(write exr, prores_4444, prores_4444xq, png16 or tiff16 to keep it; "
                          "--set output.alpha=drop silences this)")
    if output_mode == "auto":
        return read, conv, None
    if codec == "exr" and output_mode == "straight":
        raise ValueError("EXR stores premultiplied alpha by definition (OpenEXR convention)")
    return read, output_mode, None
