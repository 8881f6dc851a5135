"""docs/plugins.md is kept true by these tests (the datasette pattern): every
hook and protocol method with its exact signature, every preset and stage key,
the kit's entry points, and every code excerpt against the file it quotes."""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import cinescale_post.contracts.hookspecs as hookspecs

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"
HEADING = re.compile(r"^#{3,4} `([A-Za-z_][A-Za-z0-9_]*)(\(.*\))?`\s*$", re.M)
# Methods the core once found with getattr; the contract is now the base
# classes (issue 13), so none of these may be looked up by name again.
NO_LONGER_DUCK_TYPED = ("generate", "estimate_memory", "apply_memory_choice", "reduce_memory", "smoke",
                        "lookbehind_frames", "memory_profile", "check_task", "stage_patches", "stage_sigmas")


def plain_signature(func) -> str:
    """``name(args)`` as written in the docs: no ``self``, no annotations."""
    sig = inspect.signature(func)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values() if p.name != "self"]
    return f"{func.__name__}{sig.replace(parameters=params, return_annotation=inspect.Signature.empty)}"


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(number: int, text: str | None = None) -> str:
    """The text of ``## <number>. ...`` up to the next ``## `` heading."""
    text = doc() if text is None else text
    m = re.search(rf"^## {number}\. .*$", text, re.M)
    assert m, f"docs/plugins.md has no section {number}"
    end = re.search(r"^## ", text[m.end():], re.M)
    return text[m.start(): m.end() + end.start() if end else len(text)]


def documented(text: str) -> dict[str, str]:
    """name -> ``name(args)`` (or just ``name``) of every code heading."""
    return {m.group(1): m.group(1) + (m.group(2) or "") for m in HEADING.finditer(text)}


def hooks() -> dict[str, object]:
    marker = f"{hookspecs.PROJECT}_spec"
    return {n: f for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, marker)}


# ------------------------------------------------------------------ hooks


def test_every_hook_is_documented_with_its_exact_signature():
    heads = documented(section(3))
    assert len(hooks()) >= 11
    for name, spec in hooks().items():
        assert name in heads, f"hook {name} is not documented in docs/plugins.md section 3"
        assert heads[name] == plain_signature(spec), (
            f"docs/plugins.md documents {heads[name]}, but the hookspec is {plain_signature(spec)}")


def test_every_documented_hook_exists():
    stale = sorted(set(documented(section(3))) - set(hooks()))
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"


def test_first_result_hooks_say_so():
    text = section(3)
    for name, spec in hooks().items():
        opts = getattr(spec, f"{hookspecs.PROJECT}_spec")
        start = text.index(f"`{plain_signature(spec)}`")
        end = text.find("\n### ", start + 1)
        body = text[start: end if end > 0 else len(text)]
        assert ("firstresult" in body) == bool(opts["firstresult"]), (
            f"hook {name}: the docs must say firstresult exactly when the hook is one")


# ------------------------------------------------------------------ the backend protocol


def _contract_classes():
    from cinescale_post.api import Backend, Model, ModelAdapter

    return {"ModelAdapter": ModelAdapter, "Model": Model, "Backend": Backend}


def class_section(name: str) -> str:
    """Section 4's ``### The `name` class`` subsection."""
    text = section(4)
    m = re.search(rf"^### The `{name}` class\s*$", text, re.M)
    assert m, f"docs/plugins.md section 4 has no subsection for the {name} class"
    end = re.search(r"^### ", text[m.end():], re.M)
    return text[m.start(): m.end() + end.start() if end else len(text)]


def _members(cls) -> dict[str, str]:
    out = {}
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            out[name] = name
        elif inspect.isfunction(member):
            out[name] = plain_signature(member)
    return out


@pytest.mark.parametrize("name", ["ModelAdapter", "Model", "Backend"])
def test_contract_methods_are_documented_with_their_exact_signatures(name):
    cls = _contract_classes()[name]
    heads = documented(class_section(name))
    members = _members(cls)
    for member, sig in members.items():
        assert member in heads, f"{name}.{member} is not documented in docs/plugins.md section 4"
        assert heads[member] == sig, f"docs/plugins.md documents {heads[member]}, the code has {sig}"
    for member, sig in heads.items():
        assert member in members, f"docs/plugins.md documents {name}.{sig}, which is not part of the contract"


def test_the_model_contract_has_the_models_own_work():
    members = _members(_contract_classes()["Model"])
    assert {"encode", "decode", "condition", "predict", "make_scheduler", "patch_points", "model_info"} <= set(members)
    assert {"load", "memory_profile", "parse_options"} <= set(_members(_contract_classes()["ModelAdapter"]))


def test_the_core_never_discovers_backend_methods_by_name():
    """The contract is stated on base classes (docs/plugins.md section 4), not found with getattr."""
    pattern = re.compile(r'(?:getattr|hasattr)\(\s*(?:self\.)?(?:backend|model|adapter|b|obj)\s*,\s*"(' +
                         "|".join(NO_LONGER_DUCK_TYPED) + r')"')
    hits = []
    for path in (REPO / "cinescale_post").rglob("*.py"):
        if "testing" in path.parts:
            continue
        for m in pattern.finditer(path.read_text()):
            hits.append(f"{path.relative_to(REPO)}: {m.group(0)}")
    assert not hits, hits


def test_value_type_fields_are_documented():
    from cinescale_post.api import Capabilities, FrameRule, ModelInfo, PatchPoints, WindowJob

    where = {ModelInfo: section(4), WindowJob: section(4), Capabilities: section(4), PatchPoints: section(5),
             FrameRule: section(6)}
    for cls, text in where.items():
        for f in dataclasses.fields(cls):
            assert re.search(rf"`{f.name}[`(]", text) or (cls is FrameRule and f.name in text), (
                f"{cls.__name__}.{f.name} is not documented in docs/plugins.md")


def test_the_patch_kinds_the_kit_knows_are_documented():
    src = (REPO / "cinescale_post" / "testing" / "model_checks.py").read_text()
    kinds = set(re.findall(r'kind == "([a-z]+)"', src))
    assert kinds == {"rope", "temperature"}
    for k in kinds:
        assert f'`"{k}"`' in section(5)


# ------------------------------------------------------------------ presets, stages, kit, errors


def _schema_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in schema.items():
        keys += _schema_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return keys


def test_every_preset_and_stage_key_is_documented():
    from cinescale_post.contracts.stages import StageSpec
    from cinescale_post.pipeline.preset_schema import PRESET_SCHEMA

    text = section(7)
    missing = [k for k in _schema_keys(PRESET_SCHEMA) if f"`{k}`" not in text]
    assert not missing, f"preset keys missing from docs/plugins.md section 7: {missing}"
    missing = [f.name for f in dataclasses.fields(StageSpec) if f"| `{f.name}` |" not in text]
    assert not missing, f"stage keys missing from docs/plugins.md section 7: {missing}"
    documented_stage_keys = set(re.findall(r"^\| `([a-z_]+)` \| .*\|$", text.split("Stage keys")[1], re.M))
    stale = documented_stage_keys - {f.name for f in dataclasses.fields(StageSpec)}
    assert not stale, f"docs/plugins.md documents stage keys that do not exist: {sorted(stale)}"


def test_errors_and_exit_codes_match():
    import cinescale_post.contracts.errors as errors

    text = section(8)
    rows = re.findall(r"^\| `([A-Za-z]+)` \| `([A-Za-z]+)` \| (\d+) \|", text, re.M)
    assert len(rows) >= 7
    for name, base, code in rows:
        cls = getattr(errors, name)
        assert issubclass(cls, getattr(builtins, base)), (name, base)
        assert cls.exit_code == int(code), (name, cls.exit_code, code)


def test_the_kit_is_documented_as_it_is():
    import cinescale_post.testing as testing
    from cinescale_post.testing.conformance import CHECKS

    text = section(9)
    assert plain_signature(testing.run_backend_conformance) in text
    for name in ("fresh_host", "make_test_plan", "make_clip", "make_sequence", "build_tiny_sd15", "save_tiny_sd15"):
        assert f"`{name}" in text, name
    assert callable(testing.fresh_host) and callable(testing.make_test_plan)
    for check in CHECKS:
        assert f"`{check}`" in text, f"conformance check {check} is not listed in docs/plugins.md section 9"


def test_loading_controls_named_in_the_docs_exist():
    import cinescale_post.pipeline.host as host

    text = section(2) + section(10)
    assert host.ENV_LOAD in text and "--no-plugins" in text
    assert "--no-plugins" in (REPO / "cinescale_post" / "cli" / "commands.py").read_text()


# ------------------------------------------------------------------ excerpts and links


def excerpts(text: str) -> list[tuple[str, str]]:
    """(path, body) of every fenced block whose first line is ``# file: path``."""
    out = []
    for m in re.finditer(r"^```[a-z]*\n# file: (\S+)\n(.*?)^```$", text, re.M | re.S):
        out.append((m.group(1), m.group(2)))
    return out


def test_code_excerpts_match_the_files_they_quote():
    found = excerpts(doc())
    assert len(found) >= 5
    for path, body in found:
        target = REPO / path
        assert target.is_file(), f"docs/plugins.md quotes {path}, which does not exist"
        assert body in target.read_text(encoding="utf-8"), (
            f"docs/plugins.md quotes {path}, but the file no longer contains that text:\n{body}")


def test_excerpt_parser_sees_a_mismatch():
    text = "```python\n# file: README.md\nno such text in the readme\n```\n"
    [(path, body)] = excerpts(text)
    assert body not in (REPO / path).read_text()


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOC.read_text()))))
def test_relative_links_resolve(target):
    assert (DOC.parent / target).exists(), f"docs/plugins.md links to {target}, which does not exist"


def test_anchor_links_name_existing_sections():
    text = doc()
    slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.*)$", text, re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in slugs, f"docs/plugins.md links to #{anchor}, which is no heading"
