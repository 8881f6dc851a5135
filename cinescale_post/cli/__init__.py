"""The ``cinescale`` command line (:mod:`.commands`): the top layer; it parses,
builds a plan and runs it, and turns errors into exit codes once."""

from cinescale_post.cli.commands import cli, main

__all__ = ["cli", "main"]
