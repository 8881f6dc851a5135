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
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and top_level_only:
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


#: What plugins' own code may import of the core: the API, and the test kit's
#: tiny configs and tokenizer (a leaf, for ``tiny_model`` and tests).
PLUGIN_DOORS = ("cinescale_post.api", "cinescale_post.testing.tiny")


def test_plugins_import_only_the_public_api():
    assert PLUGINS, "no first-party plugins found"
    bad = []
    for pkg in PLUGINS:
        for path in pkg.rglob("*.py"):
            for mod, line in imports(path, pkg.parent, top_level_only=False):
                if mod.startswith("cinescale_post") and mod != "cinescale_post" and not any(
                        mod == d or mod.startswith(d + ".") for d in PLUGIN_DOORS):
                    bad.append(f"{path.relative_to(REPO)}:{line} imports {mod}")
    assert not bad, f"plugins may import {' and '.join(PLUGIN_DOORS)} only:\n" + "\n".join(bad)


def test_the_tiny_kit_is_a_leaf():
    """``testing.tiny`` is the one door besides the API: it imports nothing of the core."""
    assert _graph()["cinescale_post.testing.tiny"] == set()


def _graph(top_level_only: bool = False) -> dict[str, set[str]]:
    """Core module -> the core modules it imports: every import, function-level
    ones included (a lazy import hides a circle from import time, it does not
    remove it), except ``api``'s lazily loaded names (:data:`API_LAZY`)."""
    mods = {module_name(p, REPO): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        lazy = set(API_LAZY.values()) if name == "cinescale_post.api" else set()
        for mod, _ in imports(path, REPO, top_level_only=top_level_only):
            if mod in lazy:
                continue
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


# The layers, bottom first (docs/architecture.md). A module imports its own unit and the units of
# lower rows only; units in one row do not import each other.
LAYERS = [
    ("contracts", ("contracts",)),
    ("media", ("media",)),
    ("ops", ("ops",)),
    ("method", ("cascade",)),
    ("render", ("render",)),
    ("built-in plugins", ("builtin",)),
    ("pipeline", ("pipeline",)),
    ("orchestrator", ("orchestrator", "simulate")),
    ("editorial and qc", ("editorial", "qc")),
    ("test kit", ("testing",)),
    ("cli", ("cli",)),
]
#: api.py re-exports the contracts and the ops; these names it loads lazily from elsewhere
#: (they import torch or heavy media code), and only these, are exempt.
API_LAZY = {"flow_sigmas": "cinescale_post.cascade.schedule", "read_image": "cinescale_post.media.sequence_reader"}
API_MAY_IMPORT = ("contracts", "ops")


def unit_of(module: str) -> str:
    # the package itself holds the version and the hookimpl marker (contracts); __main__ runs the cli
    special = {"cinescale_post": "contracts", "cinescale_post.api": "api", "cinescale_post.__main__": "cli"}
    return special.get(module) or module.split(".")[1]


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {u: i for i, (_, units) in enumerate(layers) for u in units}
    bad = []
    for mod, deps in sorted(graph.items()):
        mu = unit_of(mod)
        for dep in sorted(deps):
            du = unit_of(dep)
            if du == mu or (mod.startswith(dep + ".") and dep.count(".") < mod.count(".")):
                continue  # its own unit, or the packages above it (run first by Python)
            if du == "api":
                bad.append(f"{mod} imports cinescale_post.api (the plugins' door; the core imports what it re-exports)")
            elif mu == "api":
                if du not in API_MAY_IMPORT:
                    bad.append(f"cinescale_post.api imports {dep} (only contracts and ops; lazy: {sorted(API_LAZY)})")
            elif rank[du] >= rank[mu]:
                up = "up" if rank[du] > rank[mu] else "sideways"
                bad.append(f"{mod} ({layers[rank[mu]][0]}) imports {dep} ({layers[rank[du]][0]}): {up}")
    return bad


def test_every_import_goes_down_the_layers():
    units = {unit_of(m) for m in _graph()}
    known = {u for _, us in LAYERS for u in us} | {"api"}
    assert units <= known, f"modules outside every layer: {sorted(units - known)} (add them to LAYERS and the doc)"
    bad = layer_violations(_graph())
    assert not bad, "imports that do not go down the layers:\n" + "\n".join(bad)


def test_the_layer_check_sees_an_upward_import():
    graph = {"cinescale_post.contracts.model": {"cinescale_post.cascade.frames"},
             "cinescale_post.media.probe": {"cinescale_post.ops.pixels"},
             "cinescale_post.cascade.ladder": {"cinescale_post.cascade.sources"},
             "cinescale_post.api": {"cinescale_post.render.options"},
             "cinescale_post.qc.report": {"cinescale_post.editorial.finalize", "cinescale_post.api"}}
    bad = layer_violations(graph)
    assert any("contracts.model (contracts) imports cinescale_post.cascade.frames (method): up" in b for b in bad)
    assert any("media.probe (media) imports cinescale_post.ops.pixels (ops): up" in b for b in bad)
    assert any("qc.report (editorial and qc) imports cinescale_post.editorial.finalize" in b and "sideways" in b
               for b in bad)
    assert any("api imports cinescale_post.render.options" in b for b in bad)
    assert any("qc.report imports cinescale_post.api" in b for b in bad)
    assert not any("cascade.ladder" in b for b in bad)


def plugin_imports(core=None) -> list[str]:
    """Imports of a plugin package (``cinescale_sdxl``...) in the core: the core
    knows plugins only through what they register (hooks, declared methods)."""
    core = core or CORE
    plugin_pkgs = {p.name for p in PLUGINS}
    bad = []
    for path in core.rglob("*.py"):
        for mod, line in imports(path, core.parent, top_level_only=False):
            if mod.split(".")[0] in plugin_pkgs:
                bad.append(f"{path.relative_to(core.parent)}:{line} imports {mod}")
    return sorted(set(bad))


def test_the_core_imports_no_plugin():
    bad = plugin_imports()
    assert not bad, "the core imports plugin packages (declare a method on the adapter instead):\n" + "\n".join(bad)


def test_the_plugin_import_check_sees_one(tmp_path):
    (tmp_path / "cinescale_post").mkdir()
    (tmp_path / "cinescale_post" / "sim.py").write_text("def f():\n    from cinescale_sdxl.backend import SDXLModel\n")
    assert "cinescale_post/sim.py:2 imports cinescale_sdxl.backend" in plugin_imports(tmp_path / "cinescale_post")


def test_the_contracts_import_no_implementation():
    for mod, deps in _graph().items():
        if unit_of(mod) == "contracts":
            assert all(unit_of(d) == "contracts" for d in deps), (mod, sorted(deps))


def test_api_lazy_names_are_exactly_the_exempt_ones():
    import cinescale_post.api as api

    outside = {n: m for n, (m, _) in api._LAZY.items() if unit_of(m) not in API_MAY_IMPORT}
    assert outside == API_LAZY


MAX_LINES = 450


def core_files_over(limit: int) -> dict[str, int]:
    out = {}
    for p in CORE.rglob("*.py"):
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out[str(p.relative_to(REPO))] = n
    return out


def test_no_core_file_over_the_limit():
    over = core_files_over(MAX_LINES)
    assert not over, f"core files over {MAX_LINES} lines (split them along their jobs): {over}"


def test_the_size_check_sees_a_long_file(tmp_path, monkeypatch):
    (tmp_path / "cinescale_post").mkdir()
    (tmp_path / "cinescale_post" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    monkeypatch.setattr(sys.modules[__name__], "CORE", tmp_path / "cinescale_post")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert core_files_over(MAX_LINES) == {"cinescale_post/long.py": MAX_LINES + 1}


def readme_links(text: str) -> list[str]:
    import re

    return [m for m in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in m and not m.startswith("mailto:")]


def test_the_readme_layout_points_into_the_repository():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    assert "docs/architecture.md" in layout and "../shared" not in layout
    for link in readme_links(text):
        target = (REPO / link).resolve()
        assert target.exists() and REPO in target.parents, f"README link {link} does not resolve inside the repo"


def test_the_link_check_sees_a_link_outside():
    assert readme_links("see [a](docs/architecture.md), [b](../shared/x.md) and [c](https://x.org)") == [
        "docs/architecture.md", "../shared/x.md"]


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


def test_an_adapter_may_not_declare_the_drivers_keys():
    """Each ``backend_options`` key has one declarer: an options type that
    takes a driver key is refused at registration, naming it."""
    from dataclasses import dataclass

    from cinescale_post.contracts.model import AdapterOptions, Capabilities, ModelAdapter, adapter_problems

    @dataclass(frozen=True)
    class Clash(AdapterOptions):
        noise: str = "mine"

    class A(ModelAdapter):
        id = "clash"
        capabilities = Capabilities(tasks=frozenset({"t2i"}), family="unet", latent_layout="image")
        options_type = Clash

        def load(self, plan):
            raise AssertionError

    assert any("driver's key(s) noise" in p for p in adapter_problems(A()))
    A.options_type = dict
    assert any("options_type" in p for p in adapter_problems(A()))
