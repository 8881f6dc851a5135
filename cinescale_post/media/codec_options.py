"""The checks every writer's ``[output.options]`` share: a known codec, only
that codec's option keys (defaults filled), and the one wording of a refused
value. Each writer keeps its own value rules (``movie_writer``,
``image_writer``, ``exr``)."""

from __future__ import annotations

from typing import Any, Mapping

from cinescale_post.contracts.errors import PlanError


def with_defaults(codec: str, defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``options``; an option ``defaults`` lacks
    raises :class:`PlanError` naming it and listing the codec's options."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise PlanError(f"codec {codec!r}: unknown option {unknown[0]!r}",
                        fix=f"options of {codec} are: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def known_codec(codec: str, codecs: Mapping[str, Any], kind: str) -> None:
    """Refuse a codec that is not a key of ``codecs`` (``kind``: "movie", "image")."""
    if codec not in codecs:
        raise PlanError(f"unknown {kind} codec {codec!r}", fix=f"use one of: {', '.join(codecs)}")


def bad_option(codec: str, key: str, value: Any, allowed: str) -> PlanError:
    """The error for ``key=value`` refused by ``codec``; ``allowed`` says what is."""
    return PlanError(f"codec {codec!r}: option {key}={value!r} is not allowed", fix=f"{key} must be {allowed}")


__all__ = ["bad_option", "known_codec", "with_defaults"]
