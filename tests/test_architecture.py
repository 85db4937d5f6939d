"""The package's shape: no import cycle, imports follow docs/architecture.md's layers,
and the light entry points never import TensorFlow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "automl_core"
ROOT = "automl_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(module: str) -> set[str]:
    """Every ``automl_core`` module ``module`` imports, anywhere in its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from package import name``: the submodule if there is one, else the package
            found |= {
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            }
    return {name for name in found if name in MODULES and name != module}


IMPORTS = {module: imported_modules(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    return next(filter(None, map(visit, sorted(graph))), None)


def without_lazy_api(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph less the root's on-first-use forwarding to ``api`` (the documented
    exception: every module imports ``hookimpl`` from the root)."""
    return graph | {ROOT: graph[ROOT] - {f"{ROOT}.api"}}


def test_find_cycle_reports_the_modules_in_order():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_there_is_no_import_cycle():
    assert IMPORTS[ROOT] == {f"{ROOT}.api"}, "the root package imports only api, lazily"
    cycle = find_cycle(without_lazy_api(IMPORTS))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- layers -----------------------------------------------------------------------------


def documented_layers() -> list[list[str]]:
    """docs/architecture.md's layers, bottom first: folders (``engine/``) and files."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"## Layers\n.*?```\n(.*?)```", text, re.S)[1]
    lines = [line.split("#")[0].split() for line in block.splitlines()]
    return [entries for entries in reversed(lines) if entries]


def layer_of(module: str, layers: list[list[str]]) -> int:
    """The index of the line naming the module's file, else its folder."""
    path = MODULES[module].relative_to(PACKAGE).as_posix()
    folder = path.rpartition("/")[0] + "/"
    for wanted in (path, folder):
        for index, entries in enumerate(layers):
            if wanted in entries:
                return index
    raise AssertionError(f"docs/architecture.md's layers do not place {path}")


def test_every_layer_entry_exists_once():
    entries = [entry for layer in documented_layers() for entry in layer]
    for entry in entries:
        assert (PACKAGE / entry).exists(), f"docs/architecture.md names {entry}: not found"
        assert entries.count(entry) == 1, f"docs/architecture.md places {entry} twice"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    layers = documented_layers()
    own = layer_of(module, layers)
    for target in sorted(without_lazy_api(IMPORTS)[module]):
        assert layer_of(target, layers) <= own, (
            f"{module} imports {target}, a higher layer in docs/architecture.md: "
            "move the code, or the modules' places in the layers"
        )


def test_the_map_names_every_module_and_only_existing_ones():
    text = (REPO / "docs" / "architecture.md").read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    for path in re.findall(r"[\w/]+\.py", table):
        assert (PACKAGE / path).exists() or (REPO / path).exists(), f"the map names {path}"
    for module in PACKAGE.rglob("*.py"):
        path = module.relative_to(PACKAGE).as_posix()
        if module.stem not in ("__init__", "__main__"):
            assert f"`{path}`" in text, f"docs/architecture.md does not name {path}"


# --- no TensorFlow on start-up ----------------------------------------------------------


def test_package_and_subpackages_import_no_tensorflow():
    """``automl --help`` itself is checked in test_cli.py."""
    light = [ROOT, *(module_name(init) for init in sorted(PACKAGE.glob("*/__init__.py")))]
    assert "automl_core.cli" in light
    script = (
        "import importlib, sys\n"
        f"for name in {light!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {light} imported {out.stdout.strip()}"
