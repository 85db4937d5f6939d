"""The examples work as their docstrings say: packaged plugin, one-file plugins, the API."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, make_image_folder, run_automl

EXAMPLES = REPO / "examples"


def test_packaged_plugin_is_found_through_its_entry_point(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLES / "automl-plugin-example"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    path = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    out = run_automl("plugins", env={"PYTHONPATH": path})
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "mini_mlp" in line)
    assert "example" in line and "architectures" in line
    only_others = run_automl("plugins", env={"PYTHONPATH": path, "AUTOML_LOAD_PLUGINS": ""})
    assert "mini_mlp" not in only_others.stdout


def test_one_file_plugins_register_what_they_say():
    out = run_automl(
        "plugins",
        *("-p", EXAMPLES / "plugins" / "noise_augmenter.py"),
        *("-p", EXAMPLES / "plugins" / "bayesian_tuner.py"),
    )
    assert out.returncode == 0, out.stderr
    assert "noise" in out.stdout and "bayesian_quick" in out.stdout
    assert out.stderr == ""


def test_api_example_end_to_end(tmp_path):
    """A real search through the API with the example architecture, augmenter and tuner."""
    images = make_image_folder(tmp_path / "images", per_class=8)
    photo = next((images / "red").glob("*.png"))
    out = subprocess.run(
        [
            sys.executable,
            EXAMPLES / "api_search.py",
            images,
            photo,
            "--out",
            tmp_path / "run",
            "--trials",
            "2",
            "--epochs",
            "1",
            "--budget",
            "5m",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "1. trial" in out.stdout and "winner classes: blue, green, red" in out.stdout
    assert f"{photo}: " in out.stdout
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"tuner": "bayesian_quick"' in config and '"time_budget": 300.0' in config


def test_cli_reference_covers_every_command_and_search_option():
    from automl_core.cli.main import build_parser
    from automl_core.plugin.manager import load_plugins

    docs = (REPO / "docs" / "cli.md").read_text()
    parser = build_parser(load_plugins())
    commands = next(a for a in parser._actions if a.dest == "==SUPPRESS==" and a.choices)
    for name, command in commands.choices.items():
        assert f"## automl {name}" in docs
        for action in command._actions:
            assert all(flag in docs for flag in action.option_strings), (name, action)
