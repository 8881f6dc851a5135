"""Name -> object lookup for stage upscalers and fusions at run time.

``plan.build`` already checked the names against the host's registries. At
run time the cascade asks the host that registered the backend
(``backend.host``, set by the host); a backend built by hand (tests, the
smoke test) falls back to the built-in objects, then to a default ``Host()``
(or the one given to :func:`set_host`).
"""

from __future__ import annotations

from typing import Any

_HOST: Any = None


def set_host(host: Any) -> None:
    """Use ``host`` for names that are not built in (call once per process)."""
    global _HOST
    _HOST = host


def _builtin(kind: str) -> dict[str, Any]:
    if kind == "upscaler":
        from ..builtin.latent_upscalers import UPSCALERS

        return UPSCALERS
    if kind == "fusion":
        from ..builtin.fusions import FUSIONS

        return FUSIONS
    raise ValueError(f"unknown kind {kind!r}")


def resolve(kind: str, name: str) -> Any:
    """The upscaler (``kind="upscaler"``) or fusion (``"fusion"``) named ``name``."""
    table = _builtin(kind)
    if name in table:
        return table[name]
    global _HOST
    if _HOST is None:
        from ..host import Host

        _HOST = Host()
    return _HOST.upscaler(name) if kind == "upscaler" else _HOST.fusion(name)


def resolver_for(backend: Any):
    """``resolve(kind, name)`` bound to ``backend.host`` when it has one."""
    host = getattr(backend, "host", None)
    if host is None:
        return resolve
    return lambda kind, name: host.upscaler(name) if kind == "upscaler" else host.fusion(name)


__all__ = ["resolve", "resolver_for", "set_host"]
