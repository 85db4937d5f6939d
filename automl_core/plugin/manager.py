"""The plugin manager: built-ins first, then entry points, then ``-p`` files or modules,
or plugin objects handed over in Python.

A plugin that fails to import is recorded (name + one-line reason) and skipped, so one
broken third-party plugin never takes the CLI down.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import pluggy

from automl_core.errors import PluginError
from automl_core.plugin import hookspecs
from automl_core.plugin.registry import KINDS, Registry

ENTRY_POINT_GROUP = "automl"
LOAD_ENV = "AUTOML_LOAD_PLUGINS"
"""Comma-separated entry-point names to load; unset loads all, empty loads none."""

BUILTIN_PLUGINS = (
    "automl_plugins.image_folder",
    "automl_plugins.baseline_cnn",
    "automl_plugins.resnet",
    "automl_plugins.airbench",
    "automl_plugins.backbones",
    "automl_plugins.embeddings",
    "automl_plugins.vit",
    "automl_plugins.augment",
    "automl_plugins.tuners",
    "automl_plugins.exporters",
    "automl_core.execution.executors",
    "automl_plugins.ray_executor",
    "automl_plugins.tensorboard_logs",
    "automl_plugins.mlflow_tracking",
    "automl_core.cli.search",
    "automl_core.cli.inspect",
    "automl_core.cli.serve",
    "automl_core.cli.report",
    "automl_core.cli.weights",
)


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be loaded, and why, in one line."""

    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed to load and was skipped: {self.reason}"


@dataclass
class Plugins:
    """The loaded plugins and what they registered."""

    manager: pluggy.PluginManager
    failures: list[LoadFailure] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """The ``-p`` files or modules given, so child processes can load the same set."""
    in_memory: list[str] = field(default_factory=list)
    """Plugin objects no other process can import (made in ``__main__``, a notebook or a
    function, or instances), by name."""

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    @cached_property
    def registries(self) -> dict[str, Registry]:
        """Every kind's registry, collected plugin by plugin in load order."""
        return {kind: self._collect(kind) for kind in KINDS}

    def __getitem__(self, kind: str) -> Registry:
        return self.registries[kind]

    def names(self) -> list[str]:
        return [name for name, _ in self.manager.list_name_plugin()]

    def load(self, plugins: Iterable[object]) -> None:
        """Load plugins not loaded yet: ``-p`` style ``.py`` files or module names (a
        ``:name`` suffix picks an object in it), or plugin objects (see ``add``)."""
        for plugin in plugins:
            if isinstance(plugin, str | os.PathLike):
                source = normalize_source(str(plugin))
                if source not in self.sources:
                    self.sources.append(source)
                    _register(self, source, lambda source=source: _import_source(source))
            else:
                self.add(plugin)
        self.__dict__.pop("registries", None)  # collect again with the new plugins

    def add(self, plugin: object) -> None:
        """Register a plugin object: a module, class or instance with ``@hookimpl`` functions.

        Trial processes load it again by its source (``source_of``) when it has one; one
        that has none is listed in ``in_memory``."""
        source = source_of(plugin)
        if self.manager.is_registered(plugin) or source in self.sources:
            return
        name = source or _describe(plugin)
        try:
            self.manager.register(plugin, name=name)
        except Exception as error:  # pluggy's checks of the plugin's hook functions
            raise PluginError(f"plugin {name!r} cannot be registered: {error}") from error
        (self.sources if source else self.in_memory).append(name)

    def _collect(self, kind: str) -> Registry:
        registry = Registry(kind)
        hook = getattr(self.manager.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            register = registry.register_callback(impl.plugin_name)
            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as error:  # a plugin's own bug, reported as the plugin's
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in register_{kind}: {error}"
                ) from error
        return registry


def load_plugins(extra: Iterable[object] = ()) -> Plugins:
    """Load the built-in plugins, the ``automl`` entry points, then each of ``extra``.

    ``extra`` items are ``.py`` file paths or importable module names (``-p``), or plugin
    objects (``Plugins.add``).
    """
    manager = pluggy.PluginManager("automl")
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    for entry_point in _selected_entry_points():
        _register(plugins, entry_point.name, entry_point.load)
    plugins.load(extra)
    return plugins


def normalize_source(source: str) -> str:
    """A ``-p`` file as an absolute path (so a resume works from any folder); a module as is."""
    base, attribute = _split_attribute(source)
    path = Path(base)
    base = str(path.resolve()) if path.is_file() else base
    return f"{base}:{attribute}" if attribute else base


def source_of(plugin: object) -> str | None:
    """How another process imports ``plugin`` again: its module's name (or ``.py`` file),
    with ``:QualifiedName`` for a class or function; ``None`` for a plugin that lives only
    in this process (made in ``__main__``, a notebook or a function, or an instance)."""
    if isinstance(plugin, ModuleType):
        return _module_source(plugin)
    module = sys.modules.get(getattr(plugin, "__module__", None) or "")
    qualname = getattr(plugin, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<" in qualname:
        return None
    if _lookup(module, qualname) is not plugin:
        return None  # an instance (its class's name), or a name bound to something else
    base = _module_source(module)
    return base and f"{base}:{qualname}"


def _module_source(module: ModuleType) -> str | None:
    """A module's name if a fresh process finds it on the path, else its ``.py`` file."""
    name = module.__name__
    if name == "__main__":
        return None
    top = name.partition(".")[0]
    finders = (finder for finder in sys.meta_path if hasattr(finder, "find_spec"))
    if any(finder.find_spec(top, None) is not None for finder in finders):
        return name  # on the path, or an installed (editable too) package
    file = getattr(module, "__file__", None)
    return str(Path(file).resolve()) if file and file.endswith(".py") else None


def _lookup(root: object, dotted: str) -> object:
    for part in dotted.split("."):
        root = getattr(root, part, None)
    return root


def _split_attribute(source: str) -> tuple[str, str]:
    """``"pkg.mod:Plugin"`` -> ``("pkg.mod", "Plugin")``; no suffix -> ``(source, "")``."""
    match = re.fullmatch(r"(.+):([A-Za-z_][\w.]*)", source)
    return (match[1], match[2]) if match else (source, "")


def _describe(plugin: object) -> str:
    """A readable name for a plugin object: ``module.Class``, ``module.Class()``."""
    named = plugin if hasattr(plugin, "__qualname__") else type(plugin)
    suffix = "" if named is plugin else "()"
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}{suffix}"


def _selected_entry_points() -> list:
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    wanted = os.environ.get(LOAD_ENV)
    if wanted is None:
        return found
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return [ep for ep in found if ep.name in names]


def _register(plugins: Plugins, name: str, load) -> None:
    try:
        plugin = load()
        plugins.manager.register(plugin, name=name)
    except Exception as error:  # anything a broken plugin can raise while importing
        plugins.failures.append(LoadFailure(name, f"{type(error).__name__}: {error}"))


def _import_source(source: str) -> object:
    """Import a ``-p`` argument: a path to a ``.py`` file or a module name, and the object
    a ``:name`` suffix names in it."""
    base, attribute = _split_attribute(source)
    module = _import_module(base)
    if not attribute:
        return module
    found = _lookup(module, attribute)
    if found is None:
        raise AttributeError(f"{base} has no {attribute!r}")
    return found


def _import_module(source: str) -> ModuleType:
    path = Path(source)
    if source.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        module_name = f"automl_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    return importlib.import_module(source)
