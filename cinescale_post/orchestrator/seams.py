"""Window contributions handed from one chunk to another ("seams").

A temporal window is rendered by exactly one chunk: its *owner*
(``windows.assign_windows``). Frames the window shares with a neighbouring
chunk need the owner's contribution there too; instead of rendering the
window a second time, the owner hands on its weighted contribution for
those frames, and whichever side has all contributions of a frame sums them
in window order (the same float32 additions, in the same order, as a single
pass makes: bit-identical pixels) and publishes it.

Within one process (the local executor) contributions stay in memory. For
tasks in other processes (Ray actors, farm tasks) they are also written to
``<work>/seams/w<window>-f<frame>.npy`` (temporary name + rename), so the
task that finishes second finds them; they are removed once the frame is
published. A killed task leaves at worst a contribution that the next run
reuses (the plan digest guarantees it is from the same render).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cinescale_post.media.publish import temp_name

SEAMS = "seams"


def seams_dir(manifest) -> Path:
    return manifest.work / SEAMS


def clear_seams(manifest) -> None:
    """Forget every handed-on contribution (``--overwrite``, a new render)."""
    d = seams_dir(manifest)
    if d.is_dir():
        for p in d.iterdir():
            p.unlink(missing_ok=True)


class SeamStore:
    """Contributions ``(window index, frame) -> float32 (H, W, 3)`` image,
    already multiplied by the window's normalised blend weight.

    ``persist``: also write them to the manifest's work folder for tasks in
    other processes (and read theirs)."""

    def __init__(self, folder: Path, *, persist: bool, read_only: bool = False):
        self.folder = Path(folder)
        self.persist = persist and not read_only
        self.mem: dict[tuple[int, int], np.ndarray] = {}
        #: contributions this process saved (counts for tests and benchmarks)
        self.saved = 0

    def _path(self, window: int, frame: int) -> Path:
        return self.folder / f"w{window:05d}-f{frame}.npy"

    def put(self, window: int, frame: int, image: np.ndarray) -> None:
        self.mem[(window, frame)] = image
        self.saved += 1
        if not self.persist:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        final = str(self._path(window, frame))
        tmp = temp_name(final, "tmp")
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(image, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def get(self, window: int, frame: int) -> np.ndarray | None:
        got = self.mem.get((window, frame))
        if got is not None or not self.persist:
            return got
        try:
            with open(self._path(window, frame), "rb") as fh:
                return np.load(fh, allow_pickle=False)
        except (FileNotFoundError, ValueError, EOFError, OSError):
            return None  # not there yet (or cut short by a crash: its owner rewrites it)

    def drop(self, frame: int, windows) -> None:
        """The frame is published: its contributions are no longer needed."""
        for w in windows:
            self.mem.pop((w, frame), None)
            if self.persist:
                try:
                    self._path(w, frame).unlink()
                except OSError:
                    pass
