"""The plugin host: loads built-ins and entry points, fault-isolated.

Loading policy (the "why" behind each step):

* Built-ins (``BUILTIN_PLUGINS``) always load, through the same hooks as third
  parties, so a built-in never needs a back door.
* Entry points of group ``cinescale_post`` load one by one. An entry point
  that fails to import, fails pluggy's signature validation, implements an
  unknown hook (``check_pending``), raises while registering or registers an
  object without the required attributes is *recorded* (name, error) and
  skipped; every other plugin keeps working. ``cinescale plugins`` shows them.
* ``CINESCALE_LOAD_PLUGINS`` restricts entry points to a comma-separated list
  of names; set but empty loads none. ``--no-plugins`` does the same.
* Registries (backends, writers...) are collected lazily, once each.
* A diffusion backend is registered as a model adapter
  (:class:`cinescale_post.api.ModelAdapter`); its declared capabilities are
  checked at registration and an incomplete adapter is refused, naming the
  plugin. :meth:`Host.backend` wraps an adapter in a *new* core render driver
  each time, given this host's upscaler/fusion lookup (:meth:`Host.resolve`);
  the host never writes into plugin objects.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

import cinescale_post.contracts.hookspecs as hookspecs
from cinescale_post.contracts.engine import Upscaler
from cinescale_post.contracts.model import ModelAdapter, adapter_problems
from cinescale_post.contracts.errors import PluginError, UnknownNameError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cinescale_post"
ENV_LOAD = "CINESCALE_LOAD_PLUGINS"

BUILTIN_PLUGINS = (
    "cinescale_post.builtin.readers",
    "cinescale_post.builtin.writers",
    "cinescale_post.builtin.upscalers",
    "cinescale_post.builtin.latent_upscalers",
    "cinescale_post.builtin.fusions",
    "cinescale_post.builtin.temporal_fusions",
    "cinescale_post.builtin.draft",
    "cinescale_post.builtin.presets",
)


@dataclass
class PluginRecord:
    name: str
    kind: str  # "builtin" | "entrypoint"
    module: str
    version: str | None = None
    distribution: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# What a registered object must have, per registry: attribute names.
_REQUIRED = {
    "backends": ("id", "family", "load", "render", "frame_rule"),
    "upscalers": ("name", "space", "__call__"),
    "fusions": ("name",),
    "readers": ("name", "kind", "accepts", "open"),
    "writers": ("name", "codecs", "suffixes", "open", "validate_options", "per_frame"),
    "presets": (),
}
_KEY = {"backends": "id", "upscalers": "name", "fusions": "name", "readers": "name"}


class Host:
    """Plugin manager plus typed registries.

    ``Host(load_entrypoints=False)`` gives a host with built-ins only (tests,
    ``--no-plugins``). ``extra_plugins`` registers objects directly (tests).
    """

    def __init__(self, *, load_entrypoints: bool = True, extra_plugins: tuple = (),
                 env: dict | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self._registries: dict[str, dict[str, Any]] = {}
        self._owners: dict[tuple[str, str], str] = {}
        self._refused: dict[tuple[str, str], str] = {}
        env = os.environ if env is None else env
        for modname in BUILTIN_PLUGINS:
            self._load(modname.rsplit(".", 1)[-1], "builtin", lambda m=modname: importlib.import_module(m), modname)
        for obj in extra_plugins:
            name = getattr(obj, "__name__", None) or type(obj).__name__
            self._load(name, "extra", lambda o=obj: o, name)
        if load_entrypoints:
            allowed = None
            if ENV_LOAD in env:
                allowed = {n.strip() for n in env[ENV_LOAD].split(",") if n.strip()}
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if allowed is not None and ep.name not in allowed:
                    continue
                dist = getattr(ep, "dist", None)
                self._load(ep.name, "entrypoint", ep.load, ep.value,
                           version=dist.version if dist else None,
                           distribution=dist.metadata["Name"] if dist else None)

    # ---------------------------------------------------------------- loading

    def _load(self, name: str, kind: str, loader: Callable[[], Any], module: str, **meta) -> None:
        rec = PluginRecord(name=name, kind=kind, module=module, **meta)
        if kind == "builtin":
            from cinescale_post import __version__

            rec.version = __version__
            rec.distribution = "cinescale-post"
        self.records.append(rec)
        if self.pm.has_plugin(name) or self.pm.get_plugin(name) is not None:
            rec.error = f"a plugin named {name!r} is already registered"
            return
        try:
            obj = loader()
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
            rec.error = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to load: %s", name, rec.error)
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            rec.error = f"unknown hook: {exc}"
            log.warning("plugin %s implements an unknown hook: %s", name, exc)
            return
        rec.hooks = sorted(h.name for h in self.pm.get_hookcallers(self.pm.get_plugin(name)) or [])

    def _record(self, plugin_name: str) -> PluginRecord | None:
        for rec in self.records:
            if rec.name == plugin_name and rec.error is None:
                return rec
        return None

    # ---------------------------------------------------------------- registries

    def _collect(self, kind: str) -> dict[str, Any]:
        if kind in self._registries:
            return self._registries[kind]
        found: dict[str, Any] = {}
        self._registries[kind] = found
        caller = getattr(self.pm.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            plugin = impl.plugin_name

            def register(obj, _plugin=plugin):
                if kind == "backends" and isinstance(obj, ModelAdapter):
                    problems = adapter_problems(obj)
                    if problems:
                        msg = (f"model adapter {type(obj).__name__} ({obj.id or 'no id'}) of plugin {_plugin} is "
                               f"refused: it does not declare {'; '.join(problems)}")
                        if obj.id:
                            self._refused[(kind, obj.id)] = msg
                        raise TypeError(msg)
                elif kind == "upscalers" and not isinstance(obj, Upscaler):
                    raise TypeError(f"registered {type(obj).__name__} is not a cinescale_post.api.Upscaler (subclass "
                                    "it: name, space, via_pixels, __call__)")
                else:
                    missing = [a for a in _REQUIRED[kind] if not hasattr(obj, a)]
                    if missing:
                        raise TypeError(f"registered {type(obj).__name__} lacks {', '.join(missing)}")
                if kind == "presets":
                    key = Path(str(obj)).stem if not hasattr(obj, "name") else Path(obj.name).stem
                    if key in found:
                        raise ValueError(f"preset {key!r} already provided by {self._owners[(kind, key)]}")
                    found[key] = obj
                    self._owners[(kind, key)] = _plugin
                    return
                if kind == "writers":
                    for codec in obj.codecs:
                        if codec in found:
                            raise ValueError(f"codec {codec!r} already provided by {self._owners[(kind, codec)]}")
                    for codec in obj.codecs:
                        found[codec] = obj
                        self._owners[(kind, codec)] = _plugin
                    return
                key = getattr(obj, _KEY[kind])
                if key in found:
                    raise ValueError(f"{kind[:-1]} {key!r} already provided by {self._owners[(kind, key)]}")
                found[key] = obj
                self._owners[(kind, key)] = _plugin

            try:
                impl.function(**{a: register for a in impl.argnames if a == "register"})
            except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
                rec = self._record(plugin)
                msg = f"register_{kind}: {type(exc).__name__}: {exc}"
                if rec is not None:
                    rec.error = msg if rec.error is None else f"{rec.error}; {msg}"
                log.warning("plugin %s: %s", plugin, msg)
        return found

    def owner(self, kind: str, key: str) -> str | None:
        self._collect(kind)
        return self._owners.get((kind, key))

    def backends(self) -> dict[str, Any]:
        """id -> the registered object: an engine (``contracts.engine.Backend``) or
        a model adapter (``api.ModelAdapter``)."""
        return self._collect("backends")

    def upscalers(self) -> dict[str, Any]:
        return self._collect("upscalers")

    def fusions(self) -> dict[str, Any]:
        return self._collect("fusions")

    def readers(self) -> dict[str, Any]:
        return self._collect("readers")

    def writers(self) -> dict[str, Any]:
        """codec name -> WriterFactory."""
        return self._collect("writers")

    def presets(self) -> dict[str, Any]:
        return self._collect("presets")

    def _get(self, kind: str, key: str, what: str):
        reg = self._collect(kind)
        if key not in reg and (kind, key) in self._refused:
            raise PluginError(self._refused[(kind, key)],
                              fix="fix the adapter's class attributes (docs/plugins.md), or uninstall the plugin")
        if key not in reg:
            avail = ", ".join(sorted(reg)) or "none"
            raise UnknownNameError(
                f"unknown {what} {key!r}",
                fix=f"use one of: {avail} (installed plugins: `cinescale plugins`)",
            )
        return reg[key]

    def backend(self, key: str):
        """The engine of a render with backend ``key``: for a model adapter a
        new :class:`~cinescale_post.render.driver.RenderDriver` (its own
        per-render state), else the registered engine."""
        obj = self._get("backends", key, "backend")
        if isinstance(obj, ModelAdapter):
            from cinescale_post.render.driver import RenderDriver

            return RenderDriver(obj, resolve=self.resolve)
        return obj.for_render(self.resolve)

    def adapter(self, key: str) -> ModelAdapter:
        """The registered model adapter ``key`` (PlanError-style lookup)."""
        obj = self._get("backends", key, "backend")
        if not isinstance(obj, ModelAdapter):
            raise UnknownNameError(f"backend {key!r} is not a model adapter", fix="name a diffusion backend")
        return obj

    def resolve(self, kind: str, name: str):
        """``resolve("upscaler" | "fusion", name)``: the lookup handed to render drivers."""
        return self.upscaler(name) if kind == "upscaler" else self.fusion(name)

    def upscaler(self, key: str):
        return self._get("upscalers", key, "upscaler")

    def fusion(self, key: str):
        return self._get("fusions", key, "fusion")

    def writer(self, codec: str):
        return self._get("writers", codec, "codec")

    def reader_for(self, path: str):
        """The highest-priority reader that accepts ``path`` (or None)."""
        cands = [r for r in self._collect("readers").values() if _safe_accepts(r, path)]
        cands.sort(key=lambda r: -r.priority)
        return cands[0] if cands else None

    # ---------------------------------------------------------------- lifecycle

    def notify(self, hook: str, **kwargs) -> None:
        """Call a lifecycle hook; a failing plugin is logged, never fatal."""
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
            except Exception as exc:  # noqa: BLE001
                log.warning("plugin %s failed in %s: %s", impl.plugin_name, hook, exc)

    def resolve_weights(self, spec: str) -> str | None:
        return self.pm.hook.resolve_weights(spec=spec)

    def describe(self) -> list[dict]:
        """Plugin records, after collecting every registry (so registration
        failures show up too)."""
        for kind in _REQUIRED:
            self._collect(kind)
        return [r.to_dict() for r in self.records]


def _safe_accepts(factory, path: str) -> bool:
    try:
        return bool(factory.accepts(path))
    except Exception:  # noqa: BLE001
        return False
