"""Helpers for tests that need a fake installed distribution or the CLI in a
subprocess (real entry points, real signals)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def fake_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str] | None = None,
                      version: str = "1.2.3") -> Path:
    """Write an installed-looking distribution (``*.dist-info`` with
    ``entry_points.txt``) under ``root``; put ``root`` on sys.path/PYTHONPATH
    and importlib.metadata finds it like a pip-installed one."""
    root.mkdir(parents=True, exist_ok=True)
    dist = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[cinescale_post]\n{eps}\n")
    for mod, src in (modules or {}).items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))
    return root


TEST_BACKENDS_DIST = {"testbackends": "cinescale_post.testing.backends"}


def cli_env(extra_path: Path | None = None, **env) -> dict:
    e = dict(os.environ)
    if extra_path is not None:
        e["PYTHONPATH"] = os.pathsep.join([str(extra_path), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.update({k: str(v) for k, v in env.items()})
    return e


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cinescale_post", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, **kw)


def write_preset(path: Path, *, backend: str = "draft", codec: str = "exr", width: int = 128, height: int = 96,
                 chunk: int = 4, window: tuple[int, int] = (1, 0), blend: str = "linear", options: str = "",
                 backend_options: str = 'upscaler = "lanczos"', fit: str = "pad", audio: bool = True) -> Path:
    """A small preset for tests (tiny output sizes keep encodes fast)."""
    if codec == "exr" and not options:
        options = 'pixel = "half"\ncompression = "piz"'
    path.write_text(f"""schema = 1
description = "test preset"
backend = "{backend}"
seed = 7

[output]
codec = "{codec}"
width = {width}
height = {height}
fit = "{fit}"
chunk = {chunk}
audio = {str(audio).lower()}

[output.options]
{options}

[backend_options]
{backend_options if backend == "draft" else ""}

[window]
size = {window[0]}
overlap = {window[1]}
blend = "{blend}"
""")
    return path


def tree_bytes(folder: Path, pattern: str = "*") -> dict[str, bytes]:
    """name -> content of the published files in ``folder`` (hidden temporaries excluded)."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern)) if p.is_file() and not p.name.startswith(".")}


def recorder():
    """A progress sink that keeps every event: ``.events`` and ``.names(event)``."""
    from cinescale_post.orchestrator.progress import NullSink

    class Recorder(NullSink):
        def __init__(self):
            super().__init__()
            self.events = []

        def show(self, event, fields):
            self.events.append((event, fields))

        def names(self, event):
            return [f for e, f in self.events if e == event]

    return Recorder()
