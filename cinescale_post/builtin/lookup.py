"""The built-in upscalers and fusions by name, without a host: what tests, tools
and the real-size simulation hand a render driver as its ``resolve``. A render
with a host uses ``Host.resolve`` instead (built-ins and every plugin's)."""

from __future__ import annotations

from typing import Any

from cinescale_post.builtin.fusions import FUSIONS
from cinescale_post.builtin.latent_upscalers import UPSCALERS
from cinescale_post.builtin.temporal_fusions import FUSIONS as TEMPORAL
from cinescale_post.contracts.errors import UnknownNameError


def builtin_resolve(kind: str, name: str) -> Any:
    """``kind`` "upscaler" or "fusion": the built-in object called ``name``."""
    table = UPSCALERS if kind == "upscaler" else {**FUSIONS, **TEMPORAL}
    if name not in table:
        raise UnknownNameError(f"unknown {kind} {name!r}", fix=f"use one of: {', '.join(sorted(table))}")
    return table[name]


__all__ = ["builtin_resolve"]
