"""Loading plugins: built-ins, entry points, ``-p`` files; failures; the registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_automl

from automl_core.errors import PluginError, UsageError
from automl_core.plugin.manager import BUILTIN_PLUGINS, load_plugins
from automl_core.plugin.registry import Component, Registry


def write_plugin(path: Path, body: str) -> Path:
    path.write_text("from automl_core import hookimpl\n\n" + textwrap.dedent(body))
    return path


def test_builtins_load_first_and_register_their_components():
    plugins = load_plugins()
    assert plugins.names()[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)
    assert plugins["architectures"].get("baseline_cnn").plugin == "automl_plugins.baseline_cnn"
    assert plugins["augmenters"].names() == [
        "none",
        "basic",
        "randaugment",
        "mixup",
        "cutmix",
        "flip_crop_cutout",
    ]
    assert plugins["tuners"].names() == ["random", "bayesian", "hyperband", "grid"]
    assert plugins["datasets"].names() == ["image_folder"]
    assert plugins["exporters"].names() == ["keras", "saved_model", "onnx", "tflite"]
    assert plugins["executors"].names() == ["local", "inline", "ray"]
    assert plugins.failures == []


def test_plugins_command_lists_every_plugin_by_kind():
    out = run_automl("plugins", "-p", REPO / "examples" / "plugins" / "tiny_cnn.py")
    assert out.returncode == 0, out.stderr
    for text in (
        "automl_plugins.baseline_cnn",
        "baseline_cnn",
        "architectures",
        "tiny_cnn",
        "augmenters",
        "none, basic",
        "tuners",
        "random",
        "image_folder",
        "local",
    ):
        assert text in out.stdout


def test_broken_plugin_is_reported_in_one_line_and_skipped(tmp_path):
    broken = write_plugin(tmp_path / "broken.py", "import no_such_module_here\n")
    out = run_automl("plugins", "-p", broken)
    assert out.returncode == 0
    warnings = [line for line in out.stderr.splitlines() if "broken.py" in line]
    assert len(warnings) == 1
    assert "ModuleNotFoundError" in warnings[0]
    assert "baseline_cnn" in out.stdout


def test_missing_plugin_module_is_reported_and_skipped():
    plugins = load_plugins(["no_such_plugin_module"])
    assert [f.plugin for f in plugins.failures] == ["no_such_plugin_module"]
    assert "ModuleNotFoundError" in str(plugins.failures[0])
    assert "baseline_cnn" in plugins["architectures"].names()


def test_plugin_given_as_module_name(tmp_path, monkeypatch):
    write_plugin(
        tmp_path / "my_arch_plugin.py",
        """
        @hookimpl
        def register_architectures(register):
            register("my_arch", lambda hp, shape, n: None)
    """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins(["my_arch_plugin"])
    assert plugins["architectures"].get("my_arch").plugin == "my_arch_plugin"


def test_duplicate_name_is_an_error_naming_both_plugins(tmp_path):
    dup = write_plugin(
        tmp_path / "dup.py",
        """
        @hookimpl
        def register_architectures(register):
            register("baseline_cnn", lambda hp, shape, n: None)
    """,
    )
    out = run_automl("plugins", "-p", dup)
    assert out.returncode == 2
    assert "'baseline_cnn' is registered by both 'automl_plugins.baseline_cnn'" in out.stderr
    assert str(dup) in out.stderr


def test_wrong_register_call_tells_the_author_what_to_fix(tmp_path):
    bad = write_plugin(
        tmp_path / "bad.py",
        """
        @hookimpl
        def register_augmenters(register):
            register("shiny", "not a function")
    """,
    )
    with pytest.raises(PluginError, match="augmenter 'shiny' must be callable"):
        load_plugins([str(bad)])["augmenters"]


def test_entry_point_plugins_load_and_can_be_limited(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) exposing an entry point."""
    site = tmp_path / "site"
    dist = site / "automl_ep_example-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: automl-ep-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[automl]\nep_example = automl_ep_example\n")
    write_plugin(
        site / "automl_ep_example.py",
        """
        @hookimpl
        def register_tuners(register):
            register("ep_tuner", lambda **kwargs: None)
    """,
    )
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    assert plugins["tuners"].get("ep_tuner").plugin == "ep_example"

    monkeypatch.setenv("AUTOML_LOAD_PLUGINS", "")
    assert "ep_tuner" not in load_plugins()["tuners"].names()
    monkeypatch.setenv("AUTOML_LOAD_PLUGINS", "ep_example")
    assert "ep_tuner" in load_plugins()["tuners"].names()


def test_registry_selects_by_shell_pattern_in_registry_order():
    registry = Registry("architectures")
    for name in ("mobilenet_v2", "resnet", "mobilenet_v3_small"):
        registry.add(Component("architectures", name, print, "test"))
    assert [c.name for c in registry.select(["mobilenet*"])] == [
        "mobilenet_v2",
        "mobilenet_v3_small",
    ]
    assert [c.name for c in registry.select(["resnet", "mobilenet_v2"])] == [
        "mobilenet_v2",
        "resnet",
    ]
    with pytest.raises(UsageError, match=r"unknown architecture 'vit\*'"):
        registry.select(["vit*"])
    with pytest.raises(UsageError, match="did you mean 'resnet'"):
        registry.get("resnt")


def test_a_component_needing_a_missing_module_says_what_to_install():
    registry = Registry("exporters")
    register = registry.register_callback("test")
    register("fancy", print, needs=("automl_test_absent_module",), install="fancy[extra]")
    register("plain", print, needs=("json",))
    with pytest.raises(
        UsageError,
        match=r"^the exporter 'fancy' needs automl_test_absent_module: "
        r"pip install 'fancy\[extra\]'$",
    ):
        registry.get("fancy").require()
    assert registry.get("plain").require().name == "plain"
