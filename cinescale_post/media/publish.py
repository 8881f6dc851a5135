"""Publishing files safely: temporary names in the final folder, atomic
renames, and OSErrors turned into OutputErrors that say what to do."""

from __future__ import annotations

import errno
import os

from cinescale_post.contracts.errors import OutputError


def temp_name(final: str, tag: str = "partial") -> str:
    """``/d/out.mov`` -> ``/d/.out.partial-<pid>.mov`` (same folder, so
    ``os.replace`` is an atomic rename; hidden, so watch folders skip it)."""
    d, name = os.path.split(final)
    stem, suffix = os.path.splitext(name)
    return os.path.join(d, f".{stem}.{tag}-{os.getpid()}{suffix}")


def output_error(path: str, exc: BaseException, doing: str = "write") -> OutputError:
    """An OSError from writing ``path`` as an :class:`OutputError` with a fix."""
    code = getattr(exc, "errno", None)
    folder = os.path.dirname(os.path.abspath(path))
    if code == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", fix=f"free space on the disk of {folder}, "
                           "or write to another folder; finished files are kept and a re-run resumes")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot {doing} {path}: permission denied",
                           fix=f"make {folder} writable or choose another output folder")
    return OutputError(f"cannot {doing} {path}: {exc}",
                       fix=f"check that {folder} exists, is a folder, is writable and has free space")


def prepare_folder(path: str) -> None:
    """Create the output folder if needed; map failures to OutputError."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc, "create the folder of") from exc
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {path}: the folder is not writable",
                          fix=f"make {folder} writable or choose another output folder")


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
