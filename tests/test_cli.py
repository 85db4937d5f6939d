"""The ``automl`` command end to end, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, make_image_folder, run_automl


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from automl_core.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "search" in out.stdout
    assert "HEAVY []" in out.stdout


def test_console_script_reports_version():
    automl = shutil.which("automl")
    assert automl, "the automl console script is not installed"
    out = subprocess.run([automl, "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    # the distribution is automl-images ("automl" on PyPI is another project); the command
    # stays automl and reports the installed distribution's version, not the 0.0.0 fallback
    from importlib.metadata import version

    assert out.stdout.strip() == f"automl {version('automl-images')}"
    assert version("automl-images") != "0.0.0"


def test_search_end_to_end(image_folder, tmp_path):
    import keras

    run_dir = tmp_path / "run"
    out = run_automl("search", image_folder, "--max-trials", "2", "--epochs", "1", "--out", run_dir)
    assert out.returncode == 0, out.stderr
    assert "Leaderboard" in out.stdout
    assert str(run_dir / "winner" / "model.keras") in out.stdout.replace("\n", "")

    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_trials"] == 2
    dataset = json.loads((run_dir / "dataset.json").read_text())
    assert dataset["classes"] == ["blue", "green", "red"]
    assert dataset["train"] + dataset["val"] == 36
    assert dataset["image_shape"] == [16, 16, 3]

    leaderboard = json.loads((run_dir / "leaderboard.json").read_text())
    assert len(leaderboard) == 2
    scores = [row["val_accuracy"] for row in leaderboard]
    assert scores == sorted(scores, reverse=True)
    for row in leaderboard:
        metrics = json.loads((run_dir / "trials" / row["trial_id"] / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert metrics["epochs_run"] == 1
        assert metrics["params"] > 0
        assert metrics["train_seconds"] > 0
        history = json.loads((run_dir / "trials" / row["trial_id"] / "history.json").read_text())
        assert len(history["val_accuracy"]) == 1
    assert list((run_dir / "oracle").glob("trial_*/trial.json"))

    labels = json.loads((run_dir / "winner" / "labels.json").read_text())
    assert labels == ["blue", "green", "red"]
    model = keras.models.load_model(run_dir / "winner" / "model.keras")
    batch = np.zeros((4, 16, 16, 3), dtype="float32")
    probabilities = model.predict(batch, verbose=0)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_plugin_example_trains_and_ranks(image_folder, tmp_path):
    example = REPO / "examples" / "plugins" / "tiny_cnn.py"
    run_dir = tmp_path / "run"
    out = run_automl(
        "search",
        image_folder,
        "-p",
        example,
        "--architectures",
        "tiny_cnn",
        "--max-trials",
        "1",
        "--epochs",
        "1",
        "--out",
        run_dir,
    )
    assert out.returncode == 0, out.stderr
    assert "tiny_cnn" in out.stdout
    leaderboard = json.loads((run_dir / "leaderboard.json").read_text())
    assert [row["architecture"] for row in leaderboard] == ["tiny_cnn"]


def _single_class(tmp_path):
    return make_image_folder(tmp_path / "one", classes=("red",))


def _no_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("not an image")
    return tmp_path / "flat"


@pytest.mark.parametrize(
    ("folder", "flags", "message"),
    [
        (lambda tmp: tmp / "missing", [], "does not exist"),
        (_no_class_folders, [], "no class subfolders"),
        (_single_class, [], "only one class"),
        (None, ["--architectures", "baseline_cn"], "did you mean 'baseline_cnn'"),
        (None, ["--augmenters", "fancy"], "unknown augmenter 'fancy'"),
        (None, ["--tuner", "randon"], "did you mean 'random'"),
        (None, ["--epochs", "0"], "--epochs: must be a positive integer"),
        (None, ["--max-trials", "lots"], "--max-trials: must be an integer"),
        (None, ["--val-split", "1.5"], "--val-split: must be a number between 0 and 1"),
        (None, ["--objective", "speed"], "--objective: invalid choice"),
    ],
    ids=[
        "missing-folder",
        "no-class-folders",
        "single-class",
        "unknown-architecture",
        "unknown-augmenter",
        "unknown-tuner",
        "zero-epochs",
        "non-integer-trials",
        "bad-val-split",
        "bad-objective",
    ],
)
def test_bad_input_is_one_line_and_exit_2(image_folder, tmp_path, folder, flags, message):
    source = image_folder if folder is None else folder(tmp_path)
    out = run_automl("search", source, *flags, "--out", tmp_path / "run")
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = run_automl("search", tmp_path / "missing", "--debug")
    assert out.returncode != 0
    assert "Traceback" in out.stderr
    assert "does not exist" in out.stderr


def test_search_needs_a_folder_or_demo():
    out = run_automl("search")
    assert out.returncode == 2
    assert "give an image folder to search, or --demo" in out.stderr


def test_demo_dataset_is_bundled():
    from automl_core.cli.search import demo_dir

    classes = sorted(p.name for p in demo_dir().iterdir() if p.is_dir())
    assert len(classes) == 10
    assert "cat" in classes
    assert all(len(list((demo_dir() / c).glob("*.jpg"))) == 100 for c in classes)
