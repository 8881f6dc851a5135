"""The render driver's keys of ``[backend_options]`` (:data:`DRIVER_KEYS`, per
latent layout; validated by :class:`cinescale_post.render.options.DriverOptions`);
every other key is the model adapter's (``ModelAdapter.parse_options``). And the
path check both use. No torch, no implementation imports.
"""

from __future__ import annotations

from pathlib import Path

from cinescale_post.contracts.errors import PlanError

IMAGE_KEYS = ("noise", "key_every", "flow", "flow_warp", "anchor_lowfreq", "anchor_sigma", "anchor_filter",
              "cross_frame", "shot_frame", "posterior", "jitter", "keep_stages", "detail_mask", "detail_mask_soft",
              "context_parallel")
VIDEO_KEYS = ("noise", "noise_file", "posterior", "num_frames", "image", "context_parallel")
#: The render driver's keys of ``[backend_options]`` by ``Capabilities.latent_layout``.
DRIVER_KEYS = {"image": IMAGE_KEYS, "video": VIDEO_KEYS}


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


__all__ = ["DRIVER_KEYS", "IMAGE_KEYS", "VIDEO_KEYS", "check_path_option"]
