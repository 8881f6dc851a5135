"""Per-frame seeds derived from (seed, frame number, tile), never from
processing order, so any sub-range re-renders bit-identically."""

from __future__ import annotations

import hashlib


def frame_seed(seed: int, frame: int, tile: int = 0) -> int:
    """A 63-bit seed for one frame (and tile) of a render.

    >>> frame_seed(0, 1001) == frame_seed(0, 1001)
    True
    >>> frame_seed(0, 1001) != frame_seed(0, 1002)
    True
    """
    digest = hashlib.blake2b(f"{seed}:{frame}:{tile}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_function(seed: int):
    """``seed_for(frame, tile=0)`` bound to a plan seed."""

    def seed_for(frame: int, tile: int = 0) -> int:
        return frame_seed(seed, frame, tile)

    return seed_for
