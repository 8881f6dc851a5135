"""What a plugin's ``register_presets`` hands the host: preset files it ships."""

from __future__ import annotations


def packaged(package: str, folder: str = "presets") -> list:
    """The ``*.toml`` presets shipped inside ``package`` (in its ``presets``
    folder), sorted by name: what a plugin's ``register_presets`` registers.

    >>> packaged("cinescale_post", "_presets")  # doctest: +SKIP
    """
    from importlib import resources

    root = resources.files(package) / folder
    return sorted((r for r in root.iterdir() if r.name.endswith(".toml")), key=lambda r: r.name)


__all__ = ["packaged"]
