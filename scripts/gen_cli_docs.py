#!/usr/bin/env python3
"""Write docs/cli.md from the ``--help`` of every ``cinescale`` command.

    python scripts/gen_cli_docs.py            # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check    # exit 1 when docs/cli.md is stale (CI)

Only the core's commands are documented: plugin commands are attached by
``cli.main`` (``register_commands``), which this script never calls. The
output is deterministic: click formats at the fixed width that ``cli/commands.py``
sets as ``max_content_width`` (never the terminal's), and commands are
listed in name order.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "docs" / "cli.md"


def _commands(cmd: click.Command, path: tuple[str, ...], parent: click.Context | None):
    """(path, help text) of ``cmd`` and, for groups, of every subcommand."""
    settings = dict(cmd.context_settings)
    width = settings.pop("max_content_width", None) or (parent.max_content_width if parent else 100)
    settings.pop("terminal_width", None)
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=width, max_content_width=width,
                        **settings)
    yield path, cmd.get_help(ctx)
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _commands(cmd.commands[name], (*path, name), ctx)


def render() -> str:
    from cinescale_post.cli.commands import cli

    entries = list(_commands(cli, ("cinescale",), None))
    out = ["# `cinescale` command reference", "",
           "Generated from `--help` by `scripts/gen_cli_docs.py`; do not edit by hand. CI fails when this",
           "file differs from the generated one (`python scripts/gen_cli_docs.py` rewrites it). Commands added",
           "by plugins (`register_commands`) are not listed; see `cinescale --help` on your install.", ""]
    out += [f"* [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ in entries]
    for path, text in entries:
        out += ["", f'<a id="{"-".join(path)}"></a>', "", f"## `{' '.join(path)}`", "", "```text",
                *(line.rstrip() for line in text.rstrip("\n").splitlines()), "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    ap.add_argument("--output", type=Path, default=DEFAULT, help=f"file to write or check (default {DEFAULT})")
    args = ap.parse_args(argv)
    text = render()
    if not args.check:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
        return 0
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(args.output), "generated", lineterm="",
                                n=1)
    print("\n".join(list(diff)[:60]), file=sys.stderr)
    print(f"{args.output} is out of date with the CLI's --help: run `python scripts/gen_cli_docs.py` "
          "and commit the result", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
