"""Sweeping temporaries that a killed process left behind."""

from __future__ import annotations

import os
import re
import time

from cinescale_post.orchestrator.manifest import pid_alive

_TEMP = re.compile(r"^\..+\.(?:tmp|partial)-(\d+)(?:\.\w+)?$")
STALE_AFTER_S = 600


def sweep_stale_temporaries(folders, *, now: float | None = None) -> list[str]:
    """Remove our temporaries left by a killed run: hidden ``.name.tmp-PID``
    / ``.name.partial-PID.ext`` files whose process is gone and that have not
    changed for 10 minutes (a live task on another farm node sharing the
    folder may use the same PID number, hence the age rule)."""
    now = time.time() if now is None else now
    removed = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            m = _TEMP.match(name)
            if not m:
                continue
            path = os.path.join(folder, name)
            try:
                if now - os.stat(path).st_mtime < STALE_AFTER_S or pid_alive(int(m.group(1))):
                    continue
                os.unlink(path)
                removed.append(path)
            except OSError:
                continue
    return removed
