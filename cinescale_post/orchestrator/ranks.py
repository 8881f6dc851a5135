"""Which process publishes, when one shot runs on several processes.

Under ``torchrun`` (context parallelism for a DiT, see the Wan plugin's
PARALLEL.md) every rank runs the same render so the model's collectives
meet, but only rank 0 writes files, manifests and progress; the others
render into a writer that discards. Outside ``torch.distributed`` every
process is the main one. ``RANK`` is read from the environment first, so
this never imports torch.
"""

from __future__ import annotations

import os
import sys

from cinescale_post.contracts.media import Writer


def is_main_process() -> bool:
    rank = os.environ.get("RANK")
    if rank is not None:
        return int(rank) == 0
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


class DiscardWriter(Writer):
    """What a non-main rank writes to: nothing."""

    def __init__(self, target):
        self.target = target

    def write(self, frame) -> None:
        pass

    def close(self) -> list[str]:
        return []

    def abort(self) -> None:
        pass
