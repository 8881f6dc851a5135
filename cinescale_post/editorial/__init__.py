"""Editorial: the top layer's work on timelines. Today the farm's final step
(:mod:`.finalize`, ``python -m cinescale_post.editorial``); the hand-back a render
writes itself is :mod:`cinescale_post.orchestrator.handback`."""

from cinescale_post.editorial.finalize import main, write_otio_for_output

__all__ = ["main", "write_otio_for_output"]
