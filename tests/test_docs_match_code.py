"""The docs cannot drift from the code: every hook documented with its arguments, every
component documented the way the engine really calls it, every named module present.

The component check runs a real search in which one throwaway plugin registers, for each
kind, a component that notes how the engine calls it and then hands over to a built-in.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import REPO, make_image_folder, run_automl

from automl_core import hookimpl
from automl_core.plugin import hookspecs
from automl_core.plugin.manager import load_plugins

HOOKS = sorted(
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "automl_spec")
)
REGISTER_HOOKS = [hook for hook in HOOKS if hook.startswith("register_")]
HOOKS_MD = REPO / "docs" / "hooks.md"
RECORDED = "recorded"
"""The name every recording component is registered under."""
BUILTINS = {
    "datasets": "image_folder",
    "augmenters": "none",
    "architectures": "baseline_cnn",
    "tuners": "random",
    "exporters": "keras",
    "executors": "inline",
    "trackers": "tensorboard",
}
"""The built-in component each recording component hands its calls to, by kind."""


class Call(NamedTuple):
    """How a component was called: the number of positional arguments, the keywords."""

    positional: int
    keywords: tuple[str, ...]

    def bind(self, signature: inspect.Signature) -> inspect.BoundArguments:
        placeholders = {name: object() for name in self.keywords}
        return signature.bind(*[object()] * self.positional, **placeholders)


# --- what the docs say ------------------------------------------------------------------


def hook_sections() -> dict[str, str]:
    """docs/hooks.md's ``### hook(arguments)`` sections by hook name: heading + text."""
    sections = HOOKS_MD.read_text().split("\n### ")[1:]
    return {re.match(r"\w+", section)[0]: section for section in sections}


def signature_of(name: str, parameters: str) -> inspect.Signature:
    """The signature written as ``name(parameters)``, annotations ignored."""
    arguments = ast.parse(f"def {name}({parameters}): pass").body[0].args
    kinds = [
        (arguments.posonlyargs, inspect.Parameter.POSITIONAL_ONLY),
        (arguments.args, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ([arguments.vararg] if arguments.vararg else [], inspect.Parameter.VAR_POSITIONAL),
        (arguments.kwonlyargs, inspect.Parameter.KEYWORD_ONLY),
        ([arguments.kwarg] if arguments.kwarg else [], inspect.Parameter.VAR_KEYWORD),
    ]
    return inspect.Signature([inspect.Parameter(a.arg, kind) for args, kind in kinds for a in args])


def documented_call(hook: str) -> tuple[str, inspect.Signature]:
    """The component signature a register hook's section gives as "calls `f(...)`"."""
    found = re.search(r"calls\s+`(\w+)\(([^`]*)\)`", hook_sections()[hook])
    assert found, f"docs/hooks.md: the {hook} section has no 'calls `name(arguments)`' line"
    return found[1], signature_of(found[1], found[2])


def docstring_call(hook: str, name: str) -> inspect.Signature:
    """The signature of ``name(...)`` as the hookspec's docstring gives it."""
    doc = getattr(hookspecs, hook).__doc__
    found = re.search(rf"``{name}\(([^`]*)\)", doc)
    assert found, f"the {hook} hookspec's docstring never shows ``{name}(...)``"
    return signature_of(name, found[1])


# --- how the engine calls a component: a real search with recording components ----------


class CallRecorder:
    """A throwaway plugin: one component of each kind, registered as ``recorded``, that
    notes each call and hands it to the built-in named in ``BUILTINS``."""

    def __init__(self, plugins):
        self.plugins = plugins
        self.calls: dict[str, list[Call]] = defaultdict(list)

    def recording(self, kind: str):
        def component(*args, **kwargs):
            self.calls[kind].append(Call(len(args), tuple(sorted(kwargs))))
            builtin = self.plugins[kind].get(BUILTINS[kind]).obj
            return builtin(*args, **kwargs)

        return component

    @hookimpl
    def register_datasets(self, register):
        register(RECORDED, self.recording("datasets"))

    @hookimpl
    def register_augmenters(self, register):
        register(RECORDED, self.recording("augmenters"))

    @hookimpl
    def register_architectures(self, register):
        register(RECORDED, self.recording("architectures"))

    @hookimpl
    def register_tuners(self, register):
        register(RECORDED, self.recording("tuners"))

    @hookimpl
    def register_exporters(self, register):
        register(RECORDED, self.recording("exporters"))

    @hookimpl
    def register_executors(self, register):
        register(RECORDED, self.recording("executors"))

    @hookimpl
    def register_trackers(self, register):
        register(RECORDED, self.recording("trackers"))


def command_calls(root: Path) -> list[Call]:
    """How the real ``automl`` CLI calls a plugin command's handler."""
    record = root / "command_call.json"
    plugin = root / "recorded_command.py"
    plugin.write_text(
        textwrap.dedent(f"""
        import json
        from automl_core import hookimpl

        def handler(*args, **kwargs):
            with open({str(record)!r}, "a") as out:
                out.write(json.dumps([len(args), sorted(kwargs)]) + "\\n")

        @hookimpl
        def register_commands(subcommands):
            subcommands.add_parser({RECORDED!r}).set_defaults(handler=handler)
        """)
    )
    out = run_automl(RECORDED, "-p", plugin)
    assert out.returncode == 0, out.stderr
    return [Call(n, tuple(keywords)) for n, keywords in map(json.loads, record.open())]


@pytest.fixture(scope="module")
def engine_calls(tmp_path_factory) -> dict[str, list[Call]]:
    """Every call the engine made to a component, by kind (``commands``: the CLI's)."""
    from automl_core.engine.search import SearchConfig, search

    root = tmp_path_factory.mktemp("calls")
    plugins = load_plugins()
    recorder = CallRecorder(plugins)
    plugins.manager.register(recorder, name="call_recorder")
    images = make_image_folder(root / "images", per_class=8)
    test_images = make_image_folder(root / "test", per_class=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        search(
            SearchConfig(
                str(images),
                **dict.fromkeys(("dataset", "tuner", "executor"), RECORDED),
                architectures=[RECORDED],
                augmenters=[RECORDED],
                export=[RECORDED],
                track=[RECORDED],
                test=str(test_images),
                max_trials=1,
                epochs=1,
                refit=False,
                out=str(root / "run"),
            ),
            plugins,
        )
    return dict(recorder.calls) | {"commands": command_calls(root)}


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_arguments(hook):
    arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### {hook}({arguments})\n" in HOOKS_MD.read_text(), (
        f"docs/hooks.md needs a section '### {hook}({arguments})'"
    )
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"


def test_docs_document_no_hook_that_does_not_exist():
    assert sorted(hook_sections()) == HOOKS


@pytest.mark.parametrize("hook", REGISTER_HOOKS)
def test_components_are_documented_as_the_engine_calls_them(hook, engine_calls):
    name, documented = documented_call(hook)
    shape = [(p.name, p.kind) for p in documented.parameters.values()]
    in_docstring = docstring_call(hook, name)
    assert [(p.name, p.kind) for p in in_docstring.parameters.values()] == shape, (
        f"docs/hooks.md says {name}{documented}, the {hook} docstring {name}{in_docstring}"
    )
    calls = set(engine_calls[hook.removeprefix("register_")])
    assert calls, f"the search never called a component registered by {hook}"
    for call in calls:
        try:
            bound = call.bind(documented)
        except TypeError as error:
            pytest.fail(
                f"docs/hooks.md says {name}{documented}, but the engine calls {call}: {error}"
            )
        assert list(bound.arguments) == list(documented.parameters)


@pytest.mark.parametrize("kind", BUILTINS)
def test_every_builtin_component_accepts_the_engines_call(kind, engine_calls):
    for component in load_plugins()[kind].components.values():
        for call in set(engine_calls[kind]):
            call.bind(inspect.signature(component.obj))  # TypeError names what is wrong


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_that_calls_it(hook):
    """A test plugin implements it (the engine calls it) or a test calls it itself."""
    tests = [p for p in Path(__file__).parent.rglob("*.py") if p != Path(__file__)]
    pattern = re.compile(rf"\bdef {hook}\(|\.{hook}\(")
    assert any(pattern.search(p.read_text()) for p in tests), f"no test calls the hook {hook}"


# --- every module named in the docs and docstrings exists --------------------------------

DOTTED = re.compile(r"(?<![\w/.-])(?:automl_core|automl_plugins)(?:\.\w+)+")
FILE_PATH = re.compile(
    r"(?<![\w/.-])(?:\.\./)*((?:automl_core|plugins|examples|docs|tests|benchmarks)/[\w./-]*\w)"
)
TEXTS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "automl_core").rglob("*.py")),
    *sorted((REPO / "plugins").glob("*.py")),
]


def named(pattern: re.Pattern, group: int = 0) -> list[tuple[str, str]]:
    return sorted(
        {
            (str(path.relative_to(REPO)), found[group])
            for path in TEXTS
            for found in pattern.finditer(path.read_text())
        }
    )


def resolve(dotted: str) -> object:
    """The module, or the attribute of the longest importable module, ``dotted`` names."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize(("text", "dotted"), named(DOTTED))
def test_every_dotted_name_in_the_docs_exists(text, dotted):
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{text} names {dotted}, which does not exist: {error}")


@pytest.mark.parametrize(("text", "path"), named(FILE_PATH, group=1))
def test_every_file_path_in_the_docs_exists(text, path):
    assert (REPO / path).exists(), f"{text} names {path}, which does not exist"
