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


__all__ = ["PROGRESS_MODES", "command_host"]
