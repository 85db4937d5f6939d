"""One declaration of the search settings: the CLI options, the API keywords, the duration
grammar and the reference docs all follow it; plugin objects handed to the API."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict

import pytest
from conftest import REPO, make_image_folder

import automl_core
from automl_core import hookimpl
from automl_core.cli.main import build_parser
from automl_core.cli.reference import api_settings_table, cli_reference
from automl_core.engine.settings import (
    DEFAULT_TIME_BUDGET,
    SETTINGS,
    SearchConfig,
    format_duration,
    parse_duration,
)
from automl_core.errors import UsageError
from automl_core.plugin.manager import load_plugins, source_of


def tiny_model(hp, input_shape, num_classes):
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


class TinyPlugin:
    """A plugin as a class: importable from this module as ``test_settings:TinyPlugin``."""

    @hookimpl
    def register_architectures(register):
        register("tiny_class", tiny_model, description="a class's architecture")


def search_parser():
    parser = build_parser(load_plugins())
    return parser, parser.parse_args(["search", "photos"])


def test_every_setting_is_a_search_option_with_its_declared_default():
    parser, args = search_parser()
    search = next(a for a in parser._actions if a.choices and "search" in a.choices)
    options = {f: a for a in search.choices["search"]._actions for f in a.option_strings}
    for name, setting in SETTINGS.items():
        assert getattr(args, name) == setting.default, name
        action = options[setting.flag]
        assert action.help.endswith(f"(default: {setting.described_default})"), name
        if setting.choices:
            assert tuple(action.choices) == setting.choices


def test_fixed_choices_come_from_their_source_constants():
    from automl_core.engine.settings import PRECISIONS
    from automl_core.training.trial import OBJECTIVES

    assert SETTINGS["objective"].choices == tuple(OBJECTIVES)
    assert SETTINGS["precision"].choices == PRECISIONS


def test_the_api_and_the_cli_build_the_same_config():
    _, args = search_parser()
    from_cli = SearchConfig("photos", **{name: getattr(args, name) for name in SETTINGS})
    from_api = SearchConfig("photos")  # what automl_core.search("photos") starts from
    assert asdict(from_cli) == asdict(from_api)
    assert from_api.time_budget == DEFAULT_TIME_BUDGET and from_api.max_trials is None
    assert SearchConfig("photos", max_trials=3).time_budget is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        (" 2H ", 7200.0),
        (".5m", 30.0),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["soon", "10x", "-5m", "0", "0s", "", "m", "1h30", "h1", "1.2.3s", None, True, -1, math.inf],
)
def test_bad_durations_are_one_line_usage_errors(value):
    with pytest.raises(UsageError) as error:
        parse_duration(value)
    assert "\n" not in str(error.value) and repr(value) in str(error.value)


@pytest.mark.parametrize("seconds", [1, 90, 100, 1800, 5400, 86400 + 61])
def test_format_duration_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_cli_reads_the_same_durations(capsys):
    parser, _ = search_parser()
    assert parser.parse_args(["search", "x", "--time-budget", "1d"]).time_budget == 86400
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["search", "x", "--time-budget", "1h30"])
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "--time-budget: '1h30' is not a duration" in message and "\n" not in message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epoch": 3}, "unknown search setting 'epoch'; did you mean 'epochs'?"),
        ({"plugin": ["x.py"]}, "did you mean 'plugins'?"),
        ({"epochs": 0}, "epochs: must be a positive integer, got 0"),
        ({"time_budget": "soon"}, "time_budget: 'soon' is not a duration"),
        ({"objective": "speed"}, "objective: must be one of val_accuracy, val_loss"),
        ({"architectures": []}, "architectures: needs at least one name or pattern"),
    ],
)
def test_api_checks_settings_like_the_cli(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        automl_core.search(tmp_path, **settings)


def test_cli_reference_is_generated():
    assert (REPO / "docs" / "cli.md").read_text() == cli_reference(), (
        "regenerate: python -m automl_core.cli.reference > docs/cli.md"
    )


def test_api_docs_list_every_setting():
    assert api_settings_table() in (REPO / "docs" / "api.md").read_text(), (
        "paste the output of python -m automl_core.cli.reference api into docs/api.md"
    )


def test_plugin_objects_know_how_other_processes_load_them(tmp_path):
    import automl_plugins.resnet

    class Local:
        pass

    assert source_of(automl_plugins.resnet) == "automl_plugins.resnet"
    assert source_of(TinyPlugin) == "test_settings:TinyPlugin"
    assert source_of(Local) is None and source_of(TinyPlugin()) is None
    script = tmp_path / "not_on_the_path.py"
    script.write_text("VALUE = 1\n")
    loaded = load_plugins([script])
    module = sys.modules["automl_plugin_not_on_the_path"]
    assert source_of(module) == str(script.resolve()) == loaded.sources[0]
    by_name = load_plugins(["test_settings:TinyPlugin"])
    assert by_name["architectures"].get("tiny_class").plugin == "test_settings:TinyPlugin"


def test_a_plugin_only_this_process_has_cannot_go_to_trial_processes(tmp_path):
    class Local:
        @hookimpl
        def register_architectures(register):
            register("tiny_local", tiny_model)

    with pytest.raises(UsageError, match=r'exists only in this process.*executor="inline"'):
        automl_core.search(tmp_path, plugins=[Local], executor="local")


def quick_search(root, plugins, architecture, **settings):
    return automl_core.search(
        make_image_folder(root / "images"),
        plugins=plugins,
        architectures=architecture,
        augmenters="none",
        max_trials=1,
        epochs=1,
        refit=False,
        out=root / "run",
        **settings,
    )


def test_plugin_class_object_trains_and_ranks(tmp_path):
    result = quick_search(tmp_path, [TinyPlugin], "tiny_class", executor="inline")
    assert [t.architecture for t in result.leaderboard] == ["tiny_class"]
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["plugins"] == ["test_settings:TinyPlugin"]


def test_plugin_instance_of_this_process_trains_inline(tmp_path):
    class Local:
        @hookimpl
        def register_architectures(self, register):
            register("tiny_local", tiny_model)

    result = quick_search(tmp_path, [Local()], "tiny_local")
    assert [t.architecture for t in result.leaderboard] == ["tiny_local"]
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["executor"] == "inline" and config["plugins"] == []


def test_importable_module_object_reaches_the_trial_processes(tmp_path, monkeypatch):
    examples = str(REPO / "examples" / "plugins")
    monkeypatch.syspath_prepend(examples)
    path = [examples, os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    monkeypatch.delitem(sys.modules, "tiny_cnn", raising=False)
    import tiny_cnn

    result = quick_search(tmp_path, [tiny_cnn], "tiny_cnn")  # the local executor
    assert [t.architecture for t in result.leaderboard] == ["tiny_cnn"]
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["executor"] == "local" and config["plugins"] == ["tiny_cnn"]
