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


def test_load_in_a_fresh_process_gives_the_winners_predictions(result, tmp_path):
    """``load(run_dir)`` needs nothing of the search's process: a new interpreter gets the
    same probabilities on the same pixels, and the classes ``labels.json`` names."""
    size = result.winner.input_size
    pixels = np.random.default_rng(2).uniform(0, 255, (6, size, size, 3)).astype("float32")
    np.save(tmp_path / "pixels.npy", pixels)
    code = (
        "import json, sys, numpy as np, automl_core\n"
        "model = automl_core.load(sys.argv[1])\n"
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))\n"
        "print(json.dumps(model.classes))\n"
    )
    files = [tmp_path / "pixels.npy", tmp_path / "probabilities.npy"]
    out = subprocess.run(
        [sys.executable, "-c", code, result.run_dir, *files], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    labels = json.loads((result.run_dir / "winner" / "labels.json").read_text())
    assert json.loads(out.stdout) == labels == result.winner.classes == ["blue", "green", "red"]
    probabilities = np.load(files[1])
    assert probabilities.shape == (6, 3)
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
