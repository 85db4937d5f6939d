"""Named components, the plugin each came from, shell-pattern selection, did-you-mean."""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from automl_core.errors import PluginError, UsageError

KINDS = ("datasets", "augmenters", "architectures", "tuners", "exporters", "executors", "trackers")


@dataclass(frozen=True)
class Component:
    """One registered thing: an architecture factory, a tuner factory, ..."""

    kind: str
    name: str
    obj: Any
    plugin: str
    description: str = ""
    tags: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    """Anything else the plugin said at registration (an architecture's ``cost``...)."""

    def require(self) -> Component:
        """This component, once the modules it ``needs`` (a registration keyword) are
        installed; else a usage error saying what to ``install`` (another keyword)."""
        missing = [module for module in self.info.get("needs", ()) if not _installed(module)]
        if missing:
            install = self.info.get("install") or " ".join(missing)
            raise UsageError(
                f"the {self.kind.removesuffix('s')} {self.name!r} needs "
                f"{', '.join(missing)}: pip install '{install}'"
            )
        return self


def _installed(module: str) -> bool:
    """``module`` can be imported (found without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: import blocked
    return importlib.util.find_spec(module) is not None


@dataclass
class Registry:
    """The components of one kind, in registration order."""

    kind: str
    components: dict[str, Component] = field(default_factory=dict)

    def register_callback(self, plugin: str) -> Callable[..., None]:
        """The ``register`` function handed to a plugin's ``register_<kind>`` hook."""

        def register(
            name: str, obj: Any, *, description: str = "", tags: Iterable[str] = (), **info: Any
        ) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"{plugin}: register() needs a non-empty name, got {name!r}")
            if not callable(obj):
                raise TypeError(f"{plugin}: {self.singular} {name!r} must be callable")
            self.add(Component(self.kind, name, obj, plugin, description, tuple(tags), info))

        return register

    @property
    def singular(self) -> str:
        return self.kind.removesuffix("s")

    def add(self, component: Component) -> None:
        existing = self.components.get(component.name)
        if existing is not None:
            raise PluginError(
                f"{self.singular} {component.name!r} is registered by both "
                f"{existing.plugin!r} and {component.plugin!r}"
            )
        self.components[component.name] = component

    def names(self) -> list[str]:
        return list(self.components)

    def get(self, name: str) -> Component:
        """The component called ``name``; an unknown name suggests close matches."""
        try:
            return self.components[name]
        except KeyError:
            raise UsageError(self._unknown(name)) from None

    def select(self, patterns: Iterable[str]) -> list[Component]:
        """Components matching any shell pattern (``'mobilenet*'``), in registry order.

        A pattern that matches nothing is an error, so a typo never silently narrows
        the search.
        """
        chosen: list[str] = []
        for pattern in patterns:
            matches = fnmatch.filter(self.components, pattern)
            if not matches:
                raise UsageError(self._unknown(pattern))
            chosen += [m for m in matches if m not in chosen]
        return [self.components[name] for name in self.components if name in chosen]

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.components, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        known = ", ".join(self.components) or "none"
        return f"unknown {self.singular} {name!r}{hint} (known: {known}; see `automl plugins`)"
