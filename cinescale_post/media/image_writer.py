"""16-bit PNG and TIFF sequences, and the per-frame publishing every sequence
writer shares.

Per-frame publishing (used by :mod:`exr` too): frame ``n`` is written to
``.<name>.tmp-<pid>`` in the folder of its final name and ``os.replace``-d
into place only when complete. A half-written image can still have a valid
header (reference/MEDIA_IO.md section 5.4), so the final name alone must
prove that a frame is whole; resume logic relies on that.

PNG/TIFF pixels: (H, W, 3) float32 R'G'B' clipped to [0, 1] and rounded to
uint16 (``round(x * 65535)``), stored as 16-bit RGB, or RGBA with straight
alpha when ``target.alpha`` is set (frames arrive un-premultiplied then). OpenCV is used only to
encode to bytes in memory (never for EXR: it writes broken DWA files).
"""

from __future__ import annotations

import abc
import os
from typing import Any, Mapping

import numpy as np

from cinescale_post.contracts.errors import OutputError, PlanError
from cinescale_post.media.codec_options import bad_option, known_codec, with_defaults
from cinescale_post.contracts.media import Frame, OutputTarget, Writer
from cinescale_post.media.publish import output_error, prepare_folder, remove_quietly
from cinescale_post.media.sequence import parse_pattern


class SequenceFileWriter(Writer):
    """One file per frame at ``target.path`` (a pattern: ``%04d``, ``####``...).

    Subclasses implement :meth:`_write_file` (encode ``frame`` to ``path``).
    ``close()`` returns the published paths in write order; ``abort()``
    removes the temporary of a frame in flight, never a published frame.
    """

    def __init__(self, target: OutputTarget):
        self.target = target
        pattern = parse_pattern(target.path)
        if pattern is None:
            raise PlanError(f"{target.codec} writes one file per frame; {target.path!r} has no frame token",
                            fix="use a pattern such as shot.%04d.ext or shot.####.ext")
        self.pattern = pattern
        prepare_folder(pattern.path(0))
        self.published: list[str] = []
        self._tmp: str | None = None

    def path_for(self, frame: Frame) -> str:
        return os.path.abspath(self.pattern.path(frame.number))

    def write(self, frame: Frame) -> None:
        t = self.target
        if frame.rgb.shape != (t.height, t.width, 3):
            raise ValueError(f"frame {frame.number} is {frame.rgb.shape}, the target wants "
                             f"({t.height}, {t.width}, 3)")
        final = self.path_for(frame)
        folder, name = os.path.split(final)
        self._tmp = tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
        try:
            self._write_file(tmp, frame)
            os.replace(tmp, final)
        except OutputError:
            remove_quietly(tmp)
            raise
        except OSError as exc:
            remove_quietly(tmp)
            raise output_error(final, exc) from exc
        except Exception as exc:  # noqa: BLE001 - C++ bindings raise plain RuntimeError on I/O failure
            remove_quietly(tmp)
            if isinstance(exc, (ValueError, TypeError)):
                raise
            raise OutputError(f"cannot write {final}: {exc}",
                              fix=f"check that {folder} is writable and has free space") from exc
        finally:
            self._tmp = None
        self.published.append(final)

    @abc.abstractmethod
    def _write_file(self, path: str, frame: Frame) -> None:
        """Encode ``frame`` completely to ``path`` (a temporary name)."""

    def close(self) -> list[str]:
        return list(self.published)

    def abort(self) -> None:
        if self._tmp:
            remove_quietly(self._tmp)
            self._tmp = None


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` and flush it to the OS before the caller renames."""
    with open(path, "wb") as f:
        f.write(data)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float -> (H, W, 3) uint16, clipped to [0, 1]."""
    return np.rint(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)


# ----------------------------------------------------------------- PNG / TIFF

_TIFF_COMPRESSION = {"none": 1, "lzw": 5, "deflate": 8}
IMAGE_CODECS = {"png16": ".png", "tiff16": ".tif"}


def image_option_defaults(codec: str) -> dict[str, Any]:
    return {"compression": 3} if codec == "png16" else {"compression": "deflate"}


def validate_image_options(codec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``png16``: ``compression`` 0-9 (zlib level, default 3).
    ``tiff16``: ``compression`` none|lzw|deflate (default deflate)."""
    known_codec(codec, IMAGE_CODECS, "image")
    out = with_defaults(codec, image_option_defaults(codec), options)
    c = out["compression"]
    if codec == "png16":
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9:
            raise bad_option(codec, "compression", c, "an integer from 0 to 9")
    elif c not in _TIFF_COMPRESSION:
        raise bad_option(codec, "compression", c, f"one of {', '.join(_TIFF_COMPRESSION)}")
    return out


class ImageWriter(SequenceFileWriter):
    """16-bit PNG or TIFF per frame (codec ``png16`` or ``tiff16``)."""

    def __init__(self, target: OutputTarget):
        super().__init__(target)
        self.opts = validate_image_options(target.codec, target.options)
        import cv2  # noqa: F401 - fail at open, not at the first frame

        self._ext = IMAGE_CODECS[target.codec]

    def _write_file(self, path: str, frame: Frame) -> None:
        import cv2

        bgr = to_uint16(frame.rgb)[..., ::-1]  # OpenCV stores BGR
        if self.target.alpha and frame.alpha is not None:  # straight alpha (PNG requires it)
            a = np.rint(np.clip(frame.alpha, 0.0, 1.0) * 65535.0).astype(np.uint16)
            bgr = np.concatenate([bgr, a[..., None]], axis=-1)  # BGRA
        if self.target.codec == "png16":
            params = [cv2.IMWRITE_PNG_COMPRESSION, int(self.opts["compression"])]
        else:
            params = [cv2.IMWRITE_TIFF_COMPRESSION, _TIFF_COMPRESSION[self.opts["compression"]]]
        ok, buf = cv2.imencode(self._ext, np.ascontiguousarray(bgr), params)
        if not ok:
            raise OutputError(f"OpenCV could not encode frame {frame.number} as {self.target.codec}",
                              fix="check the opencv-python-headless installation (`python -c 'import cv2'`)")
        write_bytes(path, buf.tobytes())
