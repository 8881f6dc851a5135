"""Declared ``backend_options``: which keys belong to the render driver and which
to a model adapter, stated as data instead of split by key name.

The render driver owns the method and pipeline keys every adapter shares
(:data:`DRIVER_KEYS`, per latent layout; validated by
:class:`cinescale_post.render.options.DriverOptions`). An adapter declares its
own keys with an options type (:class:`DeclaredOptions`, named by
``ModelAdapter.options_type``): ``keys()`` are its fields. A key neither
declares is refused at plan time, naming both lists; a key both declare is
refused when the adapter registers. No torch, no implementation imports.
"""

from __future__ import annotations

import abc
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

from cinescale_post.contracts.errors import PlanError

IMAGE_KEYS = ("noise", "key_every", "flow", "flow_warp", "anchor_lowfreq", "anchor_sigma", "anchor_filter",
              "cross_frame", "shot_frame", "posterior", "jitter", "keep_stages", "detail_mask", "detail_mask_soft",
              "context_parallel")
VIDEO_KEYS = ("noise", "noise_file", "posterior", "num_frames", "image", "context_parallel")
#: The render driver's keys of ``[backend_options]`` by ``Capabilities.latent_layout``.
DRIVER_KEYS = {"image": IMAGE_KEYS, "video": VIDEO_KEYS}


class DeclaredOptions(abc.ABC):
    """A model adapter's own ``backend_options`` as a typed value (usually a
    frozen dataclass). ``from_dict`` validates (raise ``PlanError`` naming the
    key) and fills defaults; ``to_dict`` is JSON-serialisable and round-trips."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The declared keys: a dataclass's fields unless overridden."""
        if is_dataclass(cls):
            return tuple(f.name for f in fields(cls))
        raise NotImplementedError(f"{cls.__name__}.keys(): declare the option keys")

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DeclaredOptions":
        """Validated options from a table holding only :meth:`keys`."""

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """The normalised, JSON-serialisable table."""


def check_path_option(options: dict, key: str, what: str, *, folder: bool = False) -> None:
    """Plan time: ``options[key]``, when present and not empty, must name an
    existing file (``folder``: a folder); it is replaced by its absolute
    path, so farm tasks in other working folders find it. Raises
    ``PlanError`` naming the key and ``what`` to give."""
    if key not in options:
        return
    p = options[key]
    if not isinstance(p, str):
        raise PlanError(f"backend_options.{key} = {p!r} must be a path to {what}")
    if p:
        path = Path(p).expanduser()
        if not (path.is_dir() if folder else path.is_file()):
            raise PlanError(f"backend_options.{key} = {p!r} does not exist", fix=f"give {what}")
        options[key] = str(path.resolve())


__all__ = ["DRIVER_KEYS", "DeclaredOptions", "IMAGE_KEYS", "VIDEO_KEYS", "check_path_option"]
