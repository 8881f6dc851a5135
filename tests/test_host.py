import json
import sys

import pytest

from cinescale_post.contracts.errors import UnknownNameError
from cinescale_post.pipeline.host import Host

from .helpers import cli_env, fake_distribution, run_cli

GOOD = '''
from cinescale_post import hookimpl
from cinescale_post.builtin.upscalers import CV2Upscaler

@hookimpl
def register_upscalers(register):
    register(CV2Upscaler("thirdparty-area", "INTER_AREA"))
'''
BROKEN_IMPORT = "import no_such_module_anywhere\n"
MISSPELLED = '''
from cinescale_post import hookimpl

@hookimpl
def register_backend(register):  # missing "s": not a hook
    pass
'''
NONSENSE = '''
from cinescale_post import hookimpl

@hookimpl
def register_backends(register):
    register(42)
'''


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    root = fake_distribution(
        tmp_path / "site", "cinescale-thirdparty",
        {"good": "tp_good", "broken": "tp_broken", "misspelled": "tp_miss", "nonsense": "tp_nonsense"},
        {"tp_good": GOOD, "tp_broken": BROKEN_IMPORT, "tp_miss": MISSPELLED, "tp_nonsense": NONSENSE})
    monkeypatch.syspath_prepend(str(root))
    for m in ("tp_good", "tp_broken", "tp_miss", "tp_nonsense"):
        sys.modules.pop(m, None)
    return root


def _rec(host, name):
    return next(r for r in host.describe() if r["name"] == name)


def test_third_party_entry_point_is_found_and_faults_are_isolated(plugin_root):
    host = Host(env={})
    assert "thirdparty-area" in host.upscalers()
    good = _rec(host, "good")
    assert good["error"] is None and good["version"] == "1.2.3" and good["kind"] == "entrypoint"
    assert good["distribution"] == "cinescale-thirdparty" and good["hooks"] == ["register_upscalers"]
    assert "no_such_module_anywhere" in _rec(host, "broken")["error"]
    assert "unknown hook" in _rec(host, "misspelled")["error"]
    assert "lacks" in _rec(host, "nonsense")["error"]
    # the rest keep working
    assert "draft" in host.backends() and "lanczos" in host.upscalers() and "uhd-draft" in host.presets()


def test_env_restricts_loading(plugin_root):
    assert "thirdparty-area" not in Host(env={"CINESCALE_LOAD_PLUGINS": ""}).upscalers()
    only = Host(env={"CINESCALE_LOAD_PLUGINS": "good"})
    assert "thirdparty-area" in only.upscalers()
    assert {r["name"] for r in only.describe() if r["kind"] == "entrypoint"} == {"good"}


def test_unknown_names_list_what_exists(host):
    with pytest.raises(UnknownNameError) as e:
        host.backend("sdxl-nope")
    assert "draft" in str(e.value) and "test-noise" in str(e.value)
    with pytest.raises(UnknownNameError):
        host.writer("prores_ultra")


def test_duplicate_registration_is_reported():
    from cinescale_post import hookimpl
    from cinescale_post.builtin.upscalers import LANCZOS

    class Dup:
        @hookimpl
        def register_upscalers(self, register):
            register(LANCZOS)

    host = Host(load_entrypoints=False, extra_plugins=(Dup(),))
    assert host.upscalers()["lanczos"] is LANCZOS
    assert "already provided" in _rec(host, "Dup")["error"]


def test_cli_plugins_json_lists_third_party(plugin_root):
    r = run_cli(["plugins", "--json"], env=cli_env(plugin_root))
    assert r.returncode == 0, r.stderr
    recs = {x["name"]: x for x in json.loads(r.stdout)}
    assert recs["good"]["version"] == "1.2.3"
    assert recs["broken"]["error"] and recs["draft"]["error"] is None
    r2 = run_cli(["--no-plugins", "plugins", "--json"], env=cli_env(plugin_root))
    assert "good" not in {x["name"] for x in json.loads(r2.stdout)}


def test_duplicate_preset_names_are_reported(tmp_path):
    from cinescale_post import hookimpl

    shadow = tmp_path / "uhd-draft.toml"
    shadow.write_text('schema = 1\nbackend = "draft"\n')

    class Shadow:
        @hookimpl
        def register_presets(self, register):
            register(shadow)

    host = Host(load_entrypoints=False, extra_plugins=(Shadow(),))
    assert str(host.presets()["uhd-draft"]) != str(shadow)  # the built-in keeps the name
    assert "already provided" in _rec(host, "Shadow")["error"]


def test_render_needs_a_v2v_backend(tmp_path, host):
    import cinescale_post.pipeline.plan as plan_mod
    from cinescale_post.contracts.errors import PlanError
    from cinescale_post.testing import make_clip

    from .helpers import write_preset

    class T2IOnly(type(host.backend("test-noise"))):
        id = "t2i-only"
        capabilities = frozenset({"t2i"})

    host.backends()["t2i-only"] = T2IOnly()
    clip = make_clip(tmp_path / "c.mov", frames=1)
    with pytest.raises(PlanError) as e:
        plan_mod.build(str(write_preset(tmp_path / "p.toml", backend="t2i-only")), host=host, input=str(clip),
                       output=str(tmp_path / "o.####.exr"))
    assert "cannot refine" in str(e.value)


UNDECLARED = '''
from cinescale_post.api import Capabilities, ModelAdapter, hookimpl


class HalfDeclared(ModelAdapter):
    id = "half-declared"
    # t2i only, but no family and a latent layout that does not exist: refused at registration
    capabilities = Capabilities(tasks=frozenset({"t2i"}), family="", latent_layout="planar")

    def load(self, plan):
        raise AssertionError("an adapter refused at registration is never loaded")


class NoCapabilities(ModelAdapter):
    id = "no-capabilities"

    def load(self, plan):
        raise AssertionError("never loaded")


@hookimpl
def register_backends(register):
    register(HalfDeclared())
    register(NoCapabilities())
'''


def test_an_adapter_missing_declared_capabilities_is_refused_naming_the_plugin(tmp_path, monkeypatch):
    """Issue 13: capabilities are declared data, checked when the plugin registers;
    an incomplete adapter is refused with the plugin's name, and asking for it
    by name says why (not 'unknown backend')."""
    from cinescale_post.contracts.errors import PluginError

    root = fake_distribution(tmp_path / "site", "cinescale-undeclared", {"undeclared": "tp_undeclared"},
                             {"tp_undeclared": UNDECLARED})
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("tp_undeclared", None)
    host = Host(env={})
    assert "half-declared" not in host.backends() and "no-capabilities" not in host.backends()
    err = _rec(host, "undeclared")["error"]
    assert "undeclared" in err and "HalfDeclared" in err and "family" in err and "latent_layout" in err
    with pytest.raises(PluginError, match=r"(?s)plugin undeclared.*family.*docs/plugins.md"):
        host.backend("half-declared")
    # and from the command line: the plugin's name and the missing declaration, exit code of a plugin error
    r = run_cli(["generate", "--preset", "sdxl-2k-still", "--set", "backend=half-declared", "--prompt", "x",
                 "-o", str(tmp_path / "o.exr")], env=cli_env(root))
    assert r.returncode == PluginError("x").exit_code, r.stderr
    assert "undeclared" in r.stderr and "family" in r.stderr
