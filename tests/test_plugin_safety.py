"""Plugin safety (issue 8, part 5), beyond what test_host.py covers:

* code is loaded only from installed distributions' entry points, never from
  a path or module named in a preset, an override or an input;
* ``--no-plugins`` and ``CINESCALE_LOAD_PLUGINS`` keep entry points from
  being imported at all, and from rendering;
* weights are never unpickled (safetensors, or ``torch.load(weights_only=True)``);
* a plugin that raises during a render fails that render with exit code 1
  and a message naming the plugin, and leaves the output uncorrupted:
  published frames intact, no partial file under a final name, and the same
  command resumes to the bytes of an uninterrupted render.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from cinescale_post.testing import make_clip

from .helpers import cli_env, fake_distribution, run_cli, tree_bytes, write_preset

REPO = Path(__file__).resolve().parents[1]

# Imported only if someone executes it: leaves a marker file behind.
EVIL = '''
import os, pathlib
pathlib.Path(os.environ.get("CINESCALE_SAFETY_MARKER", "{marker}")).write_text("imported " + __name__)

class EvilBackend:
    pass
'''

CRASHY = '''
import os
from cinescale_post import hookimpl
from cinescale_post.testing.backends import NoiseBackend


class CrashyBackend(NoiseBackend):
    """NoiseBackend that raises where CRASHY_AT says: a frame number, "load" or "generate"."""

    id = "test-crashy"

    def load(self, plan):
        if os.environ.get("CRASHY_AT") == "load":
            raise RuntimeError("boom in load")

    def render(self, job):
        at = os.environ.get("CRASHY_AT", "")
        if at.isdigit() and any(f.number >= int(at) for f in job.frames):
            raise RuntimeError(f"boom at frame {job.frames[0].number}")
        return super().render(job)

    def generate(self, plan, seed_for):
        if os.environ.get("CRASHY_AT") == "generate":
            raise RuntimeError("boom in generate")
        return super().generate(plan, seed_for)


@hookimpl
def register_backends(register):
    register(CrashyBackend())
'''

HOOKY = '''
from cinescale_post import hookimpl


@hookimpl
def render_started(plan):
    raise RuntimeError("hooky: render_started")


@hookimpl
def chunk_finished(plan, chunk):
    raise RuntimeError("hooky: chunk_finished")


@hookimpl
def render_finished(plan, summary):
    raise RuntimeError("hooky: render_finished")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    marker = root / "evil-was-imported"
    site = fake_distribution(
        root / "site", "cinescale-safety-test",
        {"testbackends": "cinescale_post.testing.backends", "crashy": "crashy_plugin", "hooky": "hooky_plugin",
         "sidefx": "sidefx_plugin"},
        {"crashy_plugin": CRASHY, "hooky_plugin": HOOKY, "sidefx_plugin": EVIL.format(marker=marker)})
    evil_dir = root / "evil"
    evil_dir.mkdir()
    (evil_dir / "evil_mod.py").write_text(EVIL.format(marker=marker))
    (evil_dir / "evil.py").write_text(EVIL.format(marker=marker))
    clip = make_clip(root / "plate.mov", frames=6, size=(48, 32))
    return {"root": root, "site": site, "marker": marker, "evil_dir": evil_dir, "clip": clip}


@pytest.fixture
def marker(site):
    site["marker"].unlink(missing_ok=True)
    yield site["marker"]
    site["marker"].unlink(missing_ok=True)


# ------------------------------------------------------------------ code comes from entry points only


def _draft_preset(path: Path, backend: str = "draft", extra: str = "") -> Path:
    write_preset(path, codec="exr", width=96, height=64)
    text = path.read_text().replace('backend = "draft"', f'backend = "{backend}"')
    path.write_text(text + extra)
    return path


NAMED_CODE = [
    ("backend", lambda d: str(d / "evil.py")),
    ("backend", lambda d: "evil_mod"),
    ("backend", lambda d: "evil_mod.EvilBackend"),
    ("backend", lambda d: "evil_mod:EvilBackend"),
    ("stages.0.upscaler", lambda d: "evil_mod"),
    ("stages.0.fusion", lambda d: str(d / "evil.py")),
    ("output.codec", lambda d: "evil_mod"),
]


@pytest.mark.parametrize("key,value", NAMED_CODE, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NAMED_CODE)])
def test_a_path_or_module_named_in_a_preset_is_an_unknown_name_never_imported(site, marker, tmp_path, monkeypatch,
                                                                                capsys, key, value):
    import cinescale_post.cli.commands as cli

    monkeypatch.syspath_prepend(str(site["evil_dir"]))  # importable, if anyone tried
    monkeypatch.setenv("CINESCALE_LOAD_PLUGINS", "")
    monkeypatch.delenv("CINESCALE_RAISE_ERRORS", raising=False)
    name = value(site["evil_dir"])
    extra = "\n[[stages]]\nsteps = 1\n" if key.startswith("stages") else ""
    preset = _draft_preset(tmp_path / "p.toml", extra=extra)
    with pytest.raises(SystemExit) as e:
        cli.main(["--no-plugins", "render", str(site["clip"]), "-o", str(tmp_path / "o" / "f.####.exr"),
                  "--preset", str(preset), "--set", f'{key}="{name}"', "--progress", "none"])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "unknown" in err and name in err
    assert "evil_mod" not in sys.modules and "evil" not in sys.modules
    assert not marker.exists()


def test_a_python_file_given_as_preset_or_model_is_never_executed(site, marker, tmp_path, monkeypatch, capsys):
    import cinescale_post.cli.commands as cli

    monkeypatch.setenv("CINESCALE_LOAD_PLUGINS", "")
    evil = site["evil_dir"] / "evil.py"
    out = str(tmp_path / "o" / "f.####.exr")
    for args in (["--preset", str(evil)],
                 ["--preset", str(_draft_preset(tmp_path / "p.toml")), "--model", str(evil)]):
        with pytest.raises(SystemExit) as e:
            cli.main(["render", str(site["clip"]), "-o", out, *args, "--progress", "none"])
        assert e.value.code == 2, capsys.readouterr().err
    assert not marker.exists()


def test_a_module_on_pythonpath_named_as_backend_is_not_imported_by_the_real_cli(site, marker, tmp_path):
    preset = _draft_preset(tmp_path / "p.toml", backend="evil_mod")
    r = run_cli(["render", str(site["clip"]), "-o", str(tmp_path / "o" / "f.####.exr"), "--preset", str(preset)],
                env=cli_env(site["evil_dir"], CINESCALE_SAFETY_MARKER=marker))
    assert r.returncode == 2 and "unknown backend 'evil_mod'" in r.stderr, r.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ --no-plugins and CINESCALE_LOAD_PLUGINS


def test_disabled_entry_points_are_neither_imported_nor_usable(site, marker, tmp_path):
    """An entry point's module runs code when imported (sidefx writes the
    marker): disabled plugins must not be imported, and their backends must
    not be reachable from a preset."""
    preset = _draft_preset(tmp_path / "p.toml", backend="test-noise")
    render = ["render", str(site["clip"]), "-o", "OUT", "--preset", str(preset), "--progress", "none",
              "--frames", "1001-1002"]
    cases = [  # (extra CLI args, CINESCALE_LOAD_PLUGINS or None, exit code, sidefx imported)
        ([], None, 0, True),
        (["--no-plugins"], None, 2, False),
        ([], "", 2, False),
        ([], "testbackends", 0, False),
        ([], " testbackends , crashy ", 0, False),
    ]
    for i, (flags, load, code, imported) in enumerate(cases):
        marker.unlink(missing_ok=True)
        env = cli_env(site["site"], CINESCALE_SAFETY_MARKER=marker)
        env.pop("CINESCALE_LOAD_PLUGINS", None)
        if load is not None:
            env["CINESCALE_LOAD_PLUGINS"] = load
        args = [a.replace("OUT", str(tmp_path / f"o{i}" / "f.####.exr")) for a in render]
        r = run_cli([*flags, *args], env=env)
        assert r.returncode == code, (flags, load, r.stderr)
        if code == 2:
            assert "unknown backend 'test-noise'" in r.stderr
        assert marker.exists() is imported, (flags, load)


# ------------------------------------------------------------------ weights are never unpickled


UNSAFE = ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve")


def unsafe_loads(source: str) -> list[str]:
    """Calls in ``source`` that can run code while reading data: ``torch.load``
    without ``weights_only=True``, ``pickle``-family ``load``/``loads``/``Unpickler``,
    ``numpy.load(allow_pickle=True)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        attr = node.func.attr
        kw = {k.arg: k.value for k in node.keywords}
        if owner == "torch" and attr == "load":
            safe = kw.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif owner in UNSAFE and attr in ("load", "loads", "Unpickler"):
            found.append(f"line {node.lineno}: {owner}.{attr}")
        elif owner in ("np", "numpy") and attr == "load":
            allow = kw.get("allow_pickle")
            if isinstance(allow, ast.Constant) and allow.value is True:
                found.append(f"line {node.lineno}: numpy.load(allow_pickle=True)")
    return found


def test_the_scanner_finds_unsafe_loads():
    assert unsafe_loads("torch.load(p)") and unsafe_loads("torch.load(p, weights_only=False)")
    assert unsafe_loads("pickle.loads(b)") and unsafe_loads("np.load(f, allow_pickle=True)")
    assert not unsafe_loads("torch.load(p, map_location='cpu', weights_only=True)\nnp.load(f)")


def test_shipped_code_never_unpickles():
    files = sorted(REPO.glob("cinescale_post/**/*.py"))
    for plugin in sorted(REPO.glob("plugins/*/pyproject.toml")):
        files += [f for f in plugin.parent.rglob("*.py") if "tests" not in f.relative_to(plugin.parent).parts]
    assert len(files) > 50
    bad = {str(f.relative_to(REPO)): hits for f in files if (hits := unsafe_loads(f.read_text(encoding="utf-8")))}
    assert not bad, f"unsafe deserialisation in shipped code: {bad}"


def _pickled_folder(kind: str, path: Path) -> Path:
    """A diffusers folder whose denoiser weights are a pickled ``.bin``."""
    if kind == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        from cinescale_sdxl.tiny import build_tiny_sdxl

        StableDiffusionXLPipeline(**build_tiny_sdxl(0, text_encoders=False)).save_pretrained(
            path, safe_serialization=False)
    else:
        from diffusers import StableDiffusionPipeline

        from cinescale_post.testing.tiny import build_tiny_sd15

        StableDiffusionPipeline(**build_tiny_sd15(0)).save_pretrained(path, safe_serialization=False)
    assert list(path.rglob("*.bin")), "the fixture should hold pickled weights"
    return path


@pytest.mark.parametrize("kind,module,backend_id", [("sdxl", "cinescale_sdxl.plugin", "sdxl"),
                                                    ("sd15", "cinescale_example.plugin", "example-sd15")])
def test_backends_refuse_pickled_weights_without_unpickling(tmp_path, monkeypatch, kind, module, backend_id):
    plugin = pytest.importorskip(module)
    import torch

    from cinescale_post.contracts.errors import WeightsError
    from cinescale_post.testing import fresh_host, make_test_plan

    folder = _pickled_folder(kind, tmp_path / kind)
    b = fresh_host(plugin).backend(backend_id)
    plan = make_test_plan(b, model=str(folder))
    unsafe = []
    real = torch.load

    def guarded(*args, **kw):
        if kw.get("weights_only") is not True:
            unsafe.append(args[:1])
        return real(*args, **kw)

    monkeypatch.setattr(torch, "load", guarded)
    with pytest.raises(WeightsError):
        b.load(plan)
    assert unsafe == []


# ------------------------------------------------------------------ a plugin raising during a render


@pytest.fixture(scope="module")
def crash_setup(site):
    root = site["root"]
    presets = {"exr": write_preset(root / "crashy-exr.toml", backend="test-crashy", codec="exr", width=96, height=64),
               "mov": write_preset(root / "crashy-mov.toml", backend="test-crashy", codec="prores_hq", width=96,
                                   height=64, chunk=2)}
    refs = {}
    for kind, preset in presets.items():
        out = root / f"ref-{kind}" / ("f.####.exr" if kind == "exr" else "m.mov")
        r = run_cli(["render", str(site["clip"]), "-o", str(out), "--preset", str(preset), "--progress", "none"],
                    env=cli_env(site["site"], CINESCALE_LOAD_PLUGINS="crashy"))
        assert r.returncode == 0, r.stderr
        refs[kind] = tree_bytes(out.parent, "*.exr" if kind == "exr" else "*.mov")
    assert len(refs["exr"]) == 6 and list(refs["mov"]) == ["m.mov"]
    return presets, refs


def _render(site, preset, out, crash=None, plugins="crashy"):
    env = cli_env(site["site"], CINESCALE_LOAD_PLUGINS=plugins)
    if crash is not None:
        env["CRASHY_AT"] = crash
    r = run_cli(["render", str(site["clip"]), "-o", str(out), "--preset", str(preset), "--progress", "json"],
                env=env)
    return r, [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.is_file())


def test_a_backend_raising_mid_render_fails_naming_the_plugin_and_keeps_published_frames(site, crash_setup,
                                                                                          tmp_path):
    presets, refs = crash_setup
    out = tmp_path / "exr" / "f.####.exr"
    r, events = _render(site, presets["exr"], out, crash="1004")
    assert r.returncode == 1, r.stderr
    assert "plugin crashy" in r.stderr and "'test-crashy'" in r.stderr and "boom at frame 1004" in r.stderr
    assert "Traceback" not in r.stderr  # a reported plugin failure, not an internal crash
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["exit_code"] == 1 and "plugin crashy" in errors[0]["message"]
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "failed"
    published = tree_bytes(out.parent, "*.exr")
    assert sorted(published) == ["f.1001.exr", "f.1002.exr", "f.1003.exr"]
    assert all(published[n] == refs["exr"][n] for n in published)  # intact, byte for byte
    assert _hidden(out.parent) == []  # no temporaries left behind
    # the same command, once the plugin behaves, resumes to the uninterrupted bytes
    r, events = _render(site, presets["exr"], out)
    assert r.returncode == 0, r.stderr
    assert [e for e in events if e["event"] == "start"][0]["done"] == 3
    assert tree_bytes(out.parent, "*.exr") == refs["exr"]


def test_a_backend_raising_mid_movie_never_leaves_a_partial_movie(site, crash_setup, tmp_path):
    presets, refs = crash_setup
    out = tmp_path / "mov" / "m.mov"
    r, _ = _render(site, presets["mov"], out, crash="1005")
    assert r.returncode == 1 and "plugin crashy" in r.stderr, r.stderr
    assert not out.exists() and _hidden(out.parent) == []
    r, _ = _render(site, presets["mov"], out)
    assert r.returncode == 0, r.stderr
    assert tree_bytes(out.parent, "*.mov") == refs["mov"]


def test_failing_lifecycle_hooks_never_fail_a_render(site, crash_setup, tmp_path):
    presets, refs = crash_setup
    out = tmp_path / "hooky" / "f.####.exr"
    r, events = _render(site, presets["exr"], out, plugins="crashy,hooky")
    assert r.returncode == 0, r.stderr
    assert "hooky: chunk_finished" in r.stderr  # logged as a warning
    assert events[-1]["status"] == "finished" and tree_bytes(out.parent, "*.exr") == refs["exr"]


def test_a_backend_raising_in_load_fails_naming_the_plugin(site, crash_setup, tmp_path):
    presets, _ = crash_setup
    out = tmp_path / "load" / "f.####.exr"
    r, events = _render(site, presets["exr"], out, crash="load")
    assert r.returncode == 1
    assert "plugin crashy" in r.stderr and "boom in load" in r.stderr
    assert any(e["event"] == "error" for e in events)
    assert not list(out.parent.glob("*.exr"))


def test_a_backend_raising_in_generate_fails_naming_the_plugin(site, crash_setup, tmp_path):
    presets, _ = crash_setup
    out = tmp_path / "still.exr"
    env = cli_env(site["site"], CINESCALE_LOAD_PLUGINS="crashy", CRASHY_AT="generate")
    r = run_cli(["generate", "--prompt", "x", "--size", "96x64", "-o", str(out), "--preset", str(presets["exr"]),
                 "--progress", "none"], env=env)
    assert r.returncode == 1 and "boom in generate" in r.stderr
    assert not out.exists()
    assert "plugin crashy" in r.stderr
