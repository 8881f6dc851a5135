"""What every ``cinescale`` command shares: the plugin host of one invocation
and the ``--progress`` modes."""

from __future__ import annotations

import click

PROGRESS_MODES = ["auto", "bar", "json", "plain", "none"]


def command_host(ctx: click.Context):
    """The invocation's host, made on first use (``--no-plugins``: built-ins only)."""
    obj = ctx.ensure_object(dict)
    if "host" not in obj:
        from cinescale_post.pipeline.host import Host

        obj["host"] = Host(load_entrypoints=not obj.get("no_plugins", False))
    return obj["host"]


def model_argument(model: str | None, dry_run: bool) -> str | None:
    """``--model``: a weights path as given, or a known architecture name
    (``sdxl-base``, ``sdxl-turbo``, ``wan2.1-t2v-1.3b``, ``wan2.1-t2v-14b``) that
    answers ``--dry-run``/``--simulate`` from the published configs, with no
    weights on disk ("will it fit" before the download)."""
    import os
    import tempfile
    from pathlib import Path

    if not model or Path(model).expanduser().exists():
        return model
    from cinescale_post.simulate.configs import ARCHITECTURES, write_config_folder

    if model not in ARCHITECTURES:
        return model  # the plan says it does not exist
    from cinescale_post.contracts.errors import UsageError

    if not dry_run:
        raise UsageError(f"--model {model} is an architecture name: it answers --dry-run (and --simulate) from "
                         "the published configs, but a render needs weights",
                         fix="give --model a local diffusers folder or .safetensors file, or add --dry-run")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"cinescale-configs-{uid}" / model
    if not (folder / "model_index.json").is_file():
        write_config_folder(model, folder)
    click.echo(f"note: planning from the published configs of {model} (no weights)", err=True)
    return str(folder)


__all__ = ["PROGRESS_MODES", "command_host", "model_argument"]
