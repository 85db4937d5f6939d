"""The plugin manager: built-ins first, then entry points, then ``-p`` files or modules.

A plugin that fails to import is recorded (name + one-line reason) and skipped, so one
broken third-party plugin never takes the CLI down.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
    "automl_plugins.vit",
    "automl_plugins.augment",
    "automl_plugins.tuners",
    "automl_plugins.exporters",
    "automl_core.execution.executors",
    "automl_plugins.ray_executor",
    "automl_core.cli.search",
    "automl_core.cli.inspect",
    "automl_core.cli.serve",
    "automl_core.cli.report",
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

    def load(self, sources: Iterable[str]) -> None:
        """Load ``-p`` style plugins (``.py`` files or module names) not loaded yet."""
        for source in map(normalize_source, sources):
            if source in self.sources:
                continue
            self.sources.append(source)
            _register(self, source, lambda source=source: _import_source(source))
        self.__dict__.pop("registries", None)  # collect again with the new plugins

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


def load_plugins(extra: Iterable[str] = ()) -> Plugins:
    """Load the built-in plugins, the ``automl`` entry points, then each of ``extra``.

    ``extra`` items are ``.py`` file paths or importable module names (``-p``).
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
    path = Path(source)
    return str(path.resolve()) if path.is_file() else source


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


def _import_source(source: str) -> ModuleType:
    """Import a ``-p`` argument: a path to a ``.py`` file, or a module name."""
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
