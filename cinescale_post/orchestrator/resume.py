"""What an earlier run left, and whether it may be resumed: the manifest's plan and input
identity against this render's (a different one refuses to mix unless ``--overwrite``), the
weights' identity, the frames verified units already hold, and an assembled master."""

from __future__ import annotations

import hashlib
import os
from cinescale_post.contracts.errors import OutputError
from cinescale_post.orchestrator.manifest import Manifest, file_sha1, pid_alive


def weights_identity(files: list[str], previous: dict | None) -> dict:
    out = {}
    previous = previous or {}
    for f in files:
        st = os.stat(f)
        prev = previous.get(f)
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            out[f] = prev
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        out[f] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}
    return out


def check_existing(manifest: Manifest, plan, ident: dict, overwrite: bool) -> dict | None:
    existing = manifest.read()
    if existing is None or overwrite:  # --overwrite: render everything again
        return None
    reasons = []
    if existing.get("plan_digest") != plan.digest():
        reasons.append("the plan differs (preset, overrides, model, seed or output settings changed)")
    old_ident = dict(existing.get("input") or {})
    new_ident = dict(ident)
    old_ident.pop("path", None)
    new_ident.pop("path", None)
    if old_ident != new_ident:
        reasons.append("the input changed since that render")
    if not reasons:
        return existing
    raise OutputError(f"{plan.output.path} holds frames of another render ({'; '.join(reasons)}; "
                      f"manifest {manifest.path})",
                      fix="add --overwrite to replace them, or choose another output path")


START_CLAIM = "render.claim"
#: how long a task that lost the start waits for the winner's manifest header
START_WAIT_S = 60.0


def claim_start(manifest: Manifest, plan, overwrite: bool) -> bool:
    """Whether this task starts the render (and may clear what an older one left):
    the first task of a render to publish its claim does; the others adopt its
    manifest (:func:`await_header`), as the frozen memory plan is claimed. A
    claim of another plan (a render whose manifest is gone) is stale: replaced."""
    import json

    from cinescale_post.orchestrator.memory_freeze import publish_once

    import socket

    path = manifest.work / START_CLAIM
    mine = {"digest": plan.digest(), "pid": os.getpid(), "host": socket.gethostname()}
    if publish_once(path, mine, replace=overwrite):
        return True
    try:
        theirs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        theirs = {}
    if theirs.get("digest") != mine["digest"]:
        return publish_once(path, mine, replace=True)
    return False


def _claimer_gone(manifest: Manifest) -> bool:
    """The process that claimed the start ran on this host and is no longer running."""
    import json
    import socket

    try:
        theirs = json.loads((manifest.work / START_CLAIM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return theirs.get("host") == socket.gethostname() and not pid_alive(int(theirs.get("pid") or 0))


def await_header(manifest: Manifest, plan, ident: dict) -> dict | None:
    """The manifest the task that claimed the start writes, once it is there
    (checked like any existing one), or None when that task ended without
    writing it (on this host), or after :data:`START_WAIT_S`: then this one
    writes it, clearing nothing."""
    import time

    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if manifest.read() is not None:
            return check_existing(manifest, plan, ident, False)
        if _claimer_gone(manifest):  # it ended without a header: nothing to wait for
            return None
        time.sleep(0.05)
    return None


def finished_frames(manifest: Manifest, source, *, full: bool = False) -> set[int]:
    """Source frames covered by verified units of earlier runs (or other farm tasks)."""
    idx = {n: i for i, n in enumerate(source.frame_numbers)}
    done: set[int] = set()
    for u in manifest.verified_units(full=full).values():
        if u.first in idx and u.last in idx:
            done.update(source.frame_numbers[idx[u.first]: idx[u.last] + 1])
    return done


def remove_chunks(manifest: Manifest) -> None:
    chunks_dir = manifest.work / "chunks"
    if chunks_dir.is_dir():
        for p in chunks_dir.iterdir():
            p.unlink()


def assembled_ok(manifest: Manifest, existing: dict, verify: bool) -> bool:
    rec = existing.get("assembled")
    if not rec:
        return False
    p = manifest.root / rec["file"]
    try:
        st = p.stat()
    except OSError:
        return False
    if st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"]:
        return False
    return not verify or file_sha1(p) == rec["sha1"]


__all__ = ["assembled_ok", "check_existing", "finished_frames", "remove_chunks", "weights_identity"]
