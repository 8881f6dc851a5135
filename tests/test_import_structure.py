"""Import structure (issue 13): plugins import the public API only, the core
has no import cycles, and the core never imports torch, diffusers or
transformers (a draft-only or farm-submit node installs none of them)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "cinescale_post"
PLUGINS = sorted(p for p in (REPO / "plugins").glob("*/cinescale_*") if p.is_dir())


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path, *, top_level_only: bool) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in ``path``; ``top_level_only``:
    those run when the module is imported (module body, ``if``/``try`` blocks,
    not function bodies; ``TYPE_CHECKING`` blocks are skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[str, int]] = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and top_level_only:
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                out.extend((a.name, node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                out.append((mod, node.lineno))
                for a in node.names:  # ``from . import x`` may name a submodule
                    out.append((f"{mod}.{a.name}", node.lineno))
            visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return out


def test_plugins_import_only_the_public_api():
    assert PLUGINS, "no first-party plugins found"
    bad = []
    for pkg in PLUGINS:
        for path in pkg.rglob("*.py"):
            for mod, line in imports(path, pkg.parent, top_level_only=False):
                if mod.startswith("cinescale_post") and mod.split(".")[:2] != ["cinescale_post", "api"]:
                    if mod != "cinescale_post":
                        bad.append(f"{path.relative_to(REPO)}:{line} imports {mod}")
    assert not bad, "plugins may import cinescale_post.api only:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    mods = {module_name(p, REPO): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for mod, _ in imports(path, REPO, top_level_only=True):
            # importing a.b.c runs a and a.b first: depend on the deepest core module named
            while mod and mod not in mods:
                mod = mod.rpartition(".")[0]
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is not a cycle through them
            if node == dep.rpartition(".")[0] and dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = dfs(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_core_has_no_import_cycles():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# A finder that makes the heavy libraries unimportable, as on a core-only install.
_BLOCK = textwrap.dedent("""
    import sys
    class _Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "diffusers", "transformers", "safetensors"):
                raise ImportError(f"{name} is not installed (core-only install)")
    sys.meta_path.insert(0, _Blocked())
""")


@pytest.mark.parametrize("argv", [
    ["--no-plugins", "render", "{clip}", "-o", "{out}/d.####.exr", "--preset", "uhd-exr-draft", "--progress", "none"],
    ["--no-plugins", "probe", "{clip}"],
    ["plugins"],  # the installed plugins register their adapters without torch too
], ids=["draft-render", "probe", "plugins"])
def test_core_commands_run_without_torch(tmp_path, argv):
    from cinescale_post.testing import make_clip

    clip = make_clip(tmp_path / "plate.mov", frames=2, size=(64, 48))
    args = [a.format(clip=clip, out=tmp_path / "out") for a in argv]
    code = _BLOCK + textwrap.dedent(f"""
        import sys
        from cinescale_post.cli.commands import main
        try:
            main({args!r})
        except SystemExit as exc:
            assert not exc.code, exc.code
        finally:
            heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
            assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    if "render" in argv:
        assert sorted(p.name for p in (tmp_path / "out").glob("d.*.exr")) == ["d.1001.exr", "d.1002.exr"]


def test_importing_the_api_and_the_cli_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        import cinescale_post.api, cinescale_post.cli.commands, cinescale_post.pipeline.plan, cinescale_post.testing
        from cinescale_post.pipeline.host import Host
        h = Host(load_entrypoints=True)
        for kind in ("backends", "upscalers", "fusions", "readers", "writers", "presets"):
            getattr(h, kind)()
        heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_production_code_never_imports_the_test_kit():
    bad = []
    for path in CORE.rglob("*.py"):
        if "testing" in path.relative_to(CORE).parts:
            continue
        for mod, line in imports(path, REPO, top_level_only=False):
            if mod == "cinescale_post.testing" or mod.startswith("cinescale_post.testing."):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_a_model_render_on_a_core_only_install_names_the_extra(tmp_path):
    """Planning needs no torch; loading a model says which extra to install
    (exit 2), never an ImportError reported as a plugin failure."""
    import json

    folder = tmp_path / "sdxl"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    args = ["generate", "--model", str(folder), "--preset", "sdxl-2k-still", "--prompt", "x", "-o",
            str(tmp_path / "s.####.exr"), "--progress", "none"]
    code = _BLOCK + textwrap.dedent(f"""
        from cinescale_post.cli.commands import main
        main({args!r})
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pip install 'cinescale-post[diffusion]'" in r.stderr and "torch" in r.stderr, r.stderr
