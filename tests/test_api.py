"""The Python API: ``automl_core.search`` and ``automl_core.load``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_image_folder

import automl_core
from automl_core.engine.settings import SETTINGS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    images = make_image_folder(root / "images")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        return automl_core.search(
            images,
            time_budget="5m",
            architectures="baseline_cnn",
            augmenters=["none"],
            max_trials=1,
            epochs=1,
            executor="inline",
            out=root / "run",
        )


def test_search_returns_leaderboard_winner_and_run_dir(result, capsys):
    assert result.run_dir.name == "run" and (result.run_dir / "config.json").is_file()
    assert [t.architecture for t in result.leaderboard] == ["baseline_cnn"]
    assert result.best is result.leaderboard[0] and result.trials == result.leaderboard
    assert not result.interrupted
    assert result.report.is_file()
    assert result.winner.classes == ["blue", "green", "red"]
    assert capsys.readouterr().out == ""  # no live view unless verbose=True


def test_load_gives_the_winner_for_prediction(result):
    model = automl_core.load(result.run_dir)
    size = model.input_size
    pixels = np.full((2, size, size, 3), (200, 30, 30), dtype=np.float32)
    probabilities = model.predict(pixels)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, result.winner.predict(pixels), rtol=1e-5)


def test_settings_reach_the_config_with_the_declared_defaults(result):
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["time_budget"] == 300.0 and config["architectures"] == ["baseline_cnn"]
    for name in ("patience", "max_failures", "seed", "objective", "precision", "export"):
        assert config[name] == SETTINGS[name].default


def test_import_is_light_until_the_api_is_used():
    code = (
        "import sys, automl_core\n"
        "assert callable(automl_core.search) and callable(automl_core.load)\n"
        "print([m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
