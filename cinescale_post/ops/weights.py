"""Loading weights from disk the same way in every adapter: the checks on
the path ``--model`` names and one wrapper that turns any loader failure
into a :class:`~cinescale_post.contracts.errors.WeightsError` with the fix.

Nothing is downloaded and nothing is unpickled: a folder must be a diffusers
pipeline (``model_index.json``), a single file must be ``.safetensors``.
No torch here; the adapter imports its loaders inside :func:`loader_errors`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from cinescale_post.contracts.errors import WeightsError


def local_weights(model: str | None, backend: str, *, kinds: str, folder_holds: str) -> Path:
    """The checked local path of ``--model``: an existing diffusers folder
    holding ``model_index.json`` or a ``.safetensors`` file. ``kinds`` says
    what to give ("a diffusers SDXL folder or a .safetensors file"),
    ``folder_holds`` what a folder contains besides ``model_index.json``."""
    if not model:
        raise WeightsError(f"the {backend} backend needs model weights", fix=f"pass --model PATH ({kinds})")
    p = Path(model).expanduser()
    if not p.exists():
        raise WeightsError(f"model weights {model} not found", fix=f"give {kinds} (nothing is downloaded)")
    if p.is_dir() and not (p / "model_index.json").is_file():
        raise WeightsError(f"{p} is not a diffusers pipeline folder (no model_index.json)",
                           fix=f"point --model at the folder holding model_index.json, {folder_holds}")
    if not p.is_dir() and p.suffix.lower() != ".safetensors":
        raise WeightsError(f"{p.name}: only .safetensors single files are loaded (pickled {p.suffix} checkpoints "
                           "can run code and are refused)",
                           fix="convert the checkpoint to .safetensors or use a diffusers folder")
    return p


@contextlib.contextmanager
def loader_errors(what: str, path: object, fix: str) -> Iterator[None]:
    """Every failure of the loaders inside is a weights problem for the user:
    re-raised as ``WeightsError("cannot load <what> weights from <path>: ...")``
    with ``fix``; a ``WeightsError`` raised inside passes unchanged."""
    try:
        yield
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise WeightsError(f"cannot load {what} weights from {path}: {type(exc).__name__}: {exc}", fix=fix) from exc


__all__ = ["loader_errors", "local_weights"]
