"""docs/cli.md is generated from ``--help`` (scripts/gen_cli_docs.py) and must
match what the CLI says now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen_cli_docs.py"
DOC = REPO / "docs" / "cli.md"
FIX = "run `python scripts/gen_cli_docs.py` and commit docs/cli.md"


def _check(path: Path, *env_cols: str) -> subprocess.CompletedProcess:
    # a fresh interpreter: no commands added by other tests or by plugins, and a
    # terminal width that must not matter
    env = {**os.environ, "COLUMNS": env_cols[0] if env_cols else "37"}
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(path)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_reference_is_up_to_date():
    r = _check(DOC)
    assert r.returncode == 0, f"docs/cli.md differs from the CLI's --help; {FIX}\n{r.stderr}"


def test_a_stale_reference_is_caught_with_the_fix_in_the_message(tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text(DOC.read_text().replace("Show this message and exit.", "Show this message.", 1))
    r = _check(stale, "250")
    assert r.returncode == 1 and "python scripts/gen_cli_docs.py" in r.stderr and "Show this message." in r.stderr


def _core_commands(cmd: click.Command, path: tuple[str, ...]) -> list[str]:
    out = [" ".join(path)]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            if sub.callback is None or sub.callback.__module__.startswith("cinescale_post"):
                out += _core_commands(sub, (*path, name))
    return out


def test_every_core_command_has_a_section():
    from cinescale_post.cli.commands import cli

    text = DOC.read_text()
    commands = _core_commands(cli, ("cinescale",))
    assert {"cinescale render", "cinescale generate", "cinescale presets list"} <= set(commands)
    for c in commands:
        assert f"## `{c}`" in text, f"docs/cli.md has no section for `{c}`; {FIX}"
