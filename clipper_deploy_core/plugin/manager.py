"""Plugin discovery: built-ins and the ``clipper_deploy`` entry-point group, with env-var knobs.

* ``CLIPPER_DEPLOY_LOAD_PLUGINS=a,b``: load only these entry-point plugins (empty: none).
* ``CLIPPER_DEPLOY_DISABLED_PLUGINS=a,b``: never load these (built-ins included).
* ``CLIPPER_DEPLOY_STRICT_PLUGINS=1``: a plugin that fails to load raises instead of warning.
* ``CLIPPER_DEPLOY_TRACE_PLUGINS=1``: log every hook call to stderr.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import importlib_metadata
import pluggy

from ..exceptions import BundleError, ClipperException
from ..naming import validate_module_names
from . import hookspecs

ENTRY_POINT_GROUP = "clipper_deploy"
#: Built-in plugins, registered through the same path as third-party ones.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (("python", "clipper_deploy_core.default_plugins.python_closure"),)
CORE_DISTRIBUTION = "clipper-deploy-core"


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped."""


Lazy = str | Callable[[], str]  # a value, or a function that reads it when it is first needed


@dataclass(frozen=True)
class PluginInfo:
    """What the core knows about one registered plugin. ``distribution`` and ``version`` are read from the package's
    metadata when first asked for: a replica template finds the plugins without parsing their METADATA (with the
    email parser: 0.15 s of its start without bytecode) for what only a listing or a new bundle's manifest needs."""

    name: str
    module: str
    distribution_source: Lazy = field(repr=False, compare=False)
    version_source: Lazy = field(repr=False, compare=False)
    builtin: bool
    model_types: tuple[str, ...] = ()
    hooks: tuple[str, ...] = field(default=())
    priorities: dict[str, int] = field(default_factory=dict)  # model type -> tie-break priority (default 0)
    preload: tuple[str, ...] = ()  # modules a replica template may import before it forks (preload_modules)

    @functools.cached_property
    def distribution(self) -> str:
        return _read(self.distribution_source)

    @functools.cached_property
    def version(self) -> str:
        return _read(self.version_source)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "builtin": self.builtin, "model_types": list(self.model_types),
                "preload": list(self.preload), "hooks": list(self.hooks),
                "priorities": {t: p for t, p in self.priorities.items() if p}}


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _read(value: Lazy) -> str:
    return value if isinstance(value, str) else value()


def _dist_version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


class PluginRegistry:
    """A pluggy manager plus per-plugin metadata and hook callers restricted to one plugin."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        if os.environ.get("CLIPPER_DEPLOY_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"clipper-deploy: {msg}"))
            self.pm.enable_tracing()

    def register(self, plugin: object, name: str, distribution: Lazy, version: Lazy, builtin: bool = False) -> None:
        """Register ``plugin`` (a module or object with ``@hookimpl`` functions) under ``name``. ``distribution``
        and ``version``: strings, or functions that read them when they are first needed."""
        if name in self._infos:
            raise ClipperException(f"Two plugins are registered under the name {name!r}: "
                                   f"{self._infos[name].distribution} and {_read(distribution)}")
        self.pm.register(plugin, name=name)
        try:
            self._infos[name] = self._info(plugin, name, distribution, version, builtin)
        except BaseException:
            self.unregister(name)  # a plugin that declares nonsense is not half-registered
            raise

    def _info(self, plugin: object, name: str, distribution: Lazy, version: Lazy, builtin: bool) -> PluginInfo:
        impls = self.pm.get_hookcallers(plugin) or []
        hooks = tuple(sorted(h.name for h in impls))
        types: list[str] = []
        priorities: dict[str, int] = {}
        if "model_types" in hooks:
            for entry in self._declared(name, "model_types"):
                type_name, priority = (entry, 0) if isinstance(entry, str) else entry
                if not isinstance(type_name, str) or not isinstance(priority, int):
                    raise ClipperException(f"plugin {name!r}: model_types entries are 'module.Class' or "
                                           f"('module.Class', priority), got {entry!r}")
                types.append(type_name)
                priorities[type_name] = priority
        preload: list[str] = []
        if "preload_modules" in hooks:
            preload = validate_module_names(self._declared(name, "preload_modules"),
                                            f"plugin {name!r}: preload_modules")
        module = getattr(plugin, "__name__", type(plugin).__module__)
        return PluginInfo(name, module, distribution, version, builtin, tuple(types), hooks, priorities,
                          tuple(sorted(set(preload))))

    def _declared(self, name: str, hook: str) -> Any:
        """What plugin ``name``'s non-firstresult hook returned (``[]`` for ``None``)."""
        results = self._caller(name, hook)()  # pluggy leaves a None result out of the list
        return (results[0] if results else None) or []

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._infos.pop(name, None)
        self._callers = {k: v for k, v in self._callers.items() if k[0] != name}

    def infos(self) -> list[PluginInfo]:
        return sorted(self._infos.values(), key=lambda i: (not i.builtin, i.name))

    def read_metadata(self) -> None:
        """Read every plugin's distribution name and version now, as a bundle's manifest records them (each is
        otherwise read, with the email parser, when first asked for)."""
        for info in self._infos.values():
            _ = info.distribution, info.version

    def info(self, name: str) -> PluginInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise BundleError(f"No clipper-deploy plugin named {name!r} is installed (installed: "
                              f"{', '.join(self._infos) or 'none'}). Install it: pip install clipper-deploy-{name}"
                              ) from None

    def _caller(self, name: str, hook: str) -> Any:
        key = (name, hook)
        if key not in self._callers:
            others = [p for n, p in self.pm.list_name_plugin() if n != name]
            self._callers[key] = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return self._callers[key]

    def call(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on plugin ``name`` only. A hook the plugin does not implement is an error."""
        info = self.info(name)
        if hook not in info.hooks:
            raise ClipperException(f"Plugin {name!r} ({info.distribution}) does not implement the {hook!r} hook")
        return self._caller(name, hook)(**kwargs)


def _handle_failure(what: str, err: BaseException) -> None:
    if os.environ.get("CLIPPER_DEPLOY_STRICT_PLUGINS"):
        raise ClipperException(f"{what} failed to load: {type(err).__name__}: {err}") from err
    warnings.warn(f"{what} failed to load and was skipped: {type(err).__name__}: {err}",
                  PluginLoadWarning, stacklevel=3)


def load_plugins(registry: PluginRegistry, entry_points: Iterable[Any] | None = None) -> PluginRegistry:
    """Register the built-ins, then every allowed entry point, isolating failures per plugin."""
    allowed, disabled = _env_list("CLIPPER_DEPLOY_LOAD_PLUGINS"), _env_list("CLIPPER_DEPLOY_DISABLED_PLUGINS") or set()
    for name, modname in DEFAULT_PLUGINS:
        if name not in disabled:
            registry.register(importlib.import_module(modname), name, CORE_DISTRIBUTION,
                              functools.partial(_dist_version, CORE_DISTRIBUTION), builtin=True)
    eps = entry_points if entry_points is not None else importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in eps:
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        dist = getattr(ep, "dist", None)
        # a Distribution's name and version parse its METADATA: read them when first asked for
        dist_name: Lazy = (lambda d=dist: str(d.name)) if dist is not None else "unknown"
        version: Lazy = (lambda d=dist: str(d.version)) if dist is not None else "0+unknown"
        try:
            registry.register(ep.load(), ep.name, dist_name, version)
        except Exception as err:  # noqa: BLE001 - one broken plugin must not take the others down
            if ep.name in registry._infos:
                registry.unregister(ep.name)
            _handle_failure(f"clipper-deploy plugin {ep.name!r} ({_read(dist_name)}, {ep.value})", err)
    return registry


_lock = threading.Lock()
_registry: PluginRegistry | None = None


def get_registry(reload: bool = False) -> PluginRegistry:
    """The process-wide registry, discovered on first use (``reload=True`` re-reads env and entry points)."""
    global _registry
    with _lock:
        if _registry is None or reload:
            _registry = load_plugins(PluginRegistry())
        return _registry
