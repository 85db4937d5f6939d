"""What the search is for: a good winner, ranked by the objective, trained as promised.

One small real search (two trials ranked by ``val_loss``, then a refit) on colour
classes any working search separates, shared by the tests of this module.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from keras.models import load_model

import automl_core
from automl_core.api import SearchResult
from automl_core.data.dataset import load_split
from automl_core.engine.run import SearchConfig, SearchRun, rank
from automl_core.plugin.manager import load_plugins
from automl_core.results.export import export_formats, load_winner
from automl_core.results.predict import load_predictor
from automl_core.results.winner import save_winner
from automl_core.rundir import RunDir, read_json
from automl_core.training.trial import REFIT, TrialResult, TrialSpec, run_trial

ARCHITECTURE = "baseline_cnn"


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> SearchResult:
    """Two trials of five epochs on 36 images of three colours, ranked by ``val_loss``,
    the winner refit on all of them (batches of 8, so each epoch takes a few steps)."""
    root = tmp_path_factory.mktemp("quality")
    images = make_image_folder(root / "images")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        return automl_core.search(
            images,
            architectures=ARCHITECTURE,
            augmenters=["none"],
            max_trials=2,
            epochs=5,
            batch_size=8,
            objective="val_loss",
            refit=True,
            executor="inline",
            out=root / "run",
        )


@pytest.fixture(scope="module")
def run_dir(searched) -> RunDir:
    return RunDir(searched.run_dir)


def test_winner_classifies_new_images_of_a_separable_set(searched, tmp_path):
    unseen = make_image_folder(tmp_path / "unseen", per_class=8, seed=1)
    predictions = searched.predict([unseen], top_k=1)
    right = [p["top"][0]["class"] == Path(p["image"]).parent.name for p in predictions]
    assert len(right) == 24
    assert np.mean(right) >= 0.9


def test_val_loss_objective_ranks_the_lowest_loss_first(searched, run_dir):
    losses = [t.val_loss for t in searched.leaderboard]
    assert len(losses) == 2 and losses[0] < losses[1]
    assert [row["trial_id"] for row in read_json(run_dir.leaderboard)] == [
        t.trial_id for t in searched.leaderboard
    ]
    assert read_json(run_dir.winner.info)["trial_id"] == searched.best.trial_id
    for trial in searched.trials:  # early stopping kept each trial's lowest-loss epoch
        history = trial.history["val_loss"]
        assert trial.best_epoch == int(np.argmin(history)) + 1
    # Keras's val_loss includes label smoothing; the ranked one is plain cross-entropy
    (plain,) = [
        t for t in searched.trials if not t.hyperparameters[f"{ARCHITECTURE}/label_smoothing"]
    ]
    assert plain.val_loss == pytest.approx(min(plain.history["val_loss"]), rel=1e-4)


def test_rank_follows_the_objective_not_accuracy():
    def trial(name, accuracy, loss, seconds):
        return TrialResult(
            name,
            ARCHITECTURE,
            "none",
            "completed",
            val_accuracy=accuracy,
            val_loss=loss,
            train_seconds=seconds,
        )

    sharp, calibrated = trial("sharp", 0.9, 0.8, 1.0), trial("calibrated", 0.8, 0.3, 2.0)
    assert rank([sharp, calibrated], "val_loss") == [calibrated, sharp]
    assert rank([calibrated, sharp], "val_accuracy") == [sharp, calibrated]


def test_refit_trains_on_the_training_and_validation_images(searched, run_dir):
    data = load_split(run_dir.data)
    assert (len(data.y_train), len(data.y_val)) == (30, 6)
    assert [t.train_images for t in searched.trials] == [30, 30]
    refit = TrialResult.load(run_dir.trial(REFIT))
    assert refit.status == "completed"
    assert refit.train_images == 36
    assert refit.epochs_run == searched.best.best_epoch
    assert read_json(run_dir.winner.info)["refit"]["images"] == refit.train_images


def test_a_continued_trial_starts_from_its_parents_weights(searched, run_dir, tmp_path):
    """One more epoch at a learning rate too small to move anything: the continuation
    ends where its parent did, which it cannot without the parent's weights (the same
    seed alone gives the parent's untrained start, at chance)."""
    parent = searched.best
    hp_config = json.loads(json.dumps(parent.hp_config))
    hp_config["values"][f"{ARCHITECTURE}/learning_rate"] = 1e-7
    spec = TrialSpec(
        trial_id="continued",
        architecture=ARCHITECTURE,
        augmenter="none",
        hp_config=hp_config,
        trial_dir=str(tmp_path / "continued"),
        epochs=parent.epochs_run + 1,
        batch_size=8,
        patience=1,
        seed=0,
        initial_epoch=parent.epochs_run,
        warm_start=parent.model_path,
    )
    plugins = load_plugins()
    data = load_split(run_dir.data)
    architecture = plugins["architectures"].get(ARCHITECTURE).obj
    continued = run_trial(spec, data, architecture, plugins["augmenters"].get("none").obj)
    assert continued.status == "completed", continued.error
    assert continued.epochs_run == parent.epochs_run + 1
    assert continued.history["val_loss"][0] == pytest.approx(parent.val_loss, abs=1e-3)
    assert parent.val_loss < 0.5  # far below chance (ln 3 = 1.1): the weights matter
    images = np.asarray(data.x_val, dtype="float32")
    np.testing.assert_allclose(
        load_model(continued.model_path).predict(images, verbose=0),
        load_model(parent.model_path).predict(images, verbose=0),
        atol=1e-3,
    )


def test_a_winner_that_keeps_flip_tta_exports_to_every_format(searched, tmp_path):
    """The best trial, as if mirroring had helped it: the winner keeps flip averaging,
    and every registered exporter's artifact carries it and gives the Keras answers."""
    run_dir = RunDir(Path(shutil.copytree(searched.run_dir, tmp_path / "run")))
    best = dataclasses.replace(searched.best, val_accuracy=0.5, val_accuracy_tta=0.75)
    plugins = load_plugins()
    run = SearchRun(
        SearchConfig(**read_json(run_dir.config)),
        run_dir,
        plugins,
        [ARCHITECTURE],
        ["none"],
        data=load_split(run_dir.data),
        leaderboard=[best],
    )
    save_winner(run, refit=None)
    winner = load_winner(run_dir.path)
    assert winner.metadata["test_time_augmentation"]["kept"]
    pixels = np.random.default_rng(3).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    mirrored = pixels[:, :, ::-1]
    expected = winner.reference.predict(pixels)
    np.testing.assert_allclose(winner.reference.predict(mirrored), expected, atol=1e-6)

    # the README's way, in a Python where automl cannot be imported: stock layers only
    np.save(tmp_path / "pixels.npy", pixels)
    plain_keras = (
        "import sys; sys.modules['automl_core'] = sys.modules['automl_plugins'] = None\n"
        "import keras, numpy as np\n"
        f"model = keras.models.load_model({str(winner.dir.model)!r})\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, "
        f"model.predict(np.load({str(tmp_path / 'pixels.npy')!r}), verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", plain_keras], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)

    formats = sorted(plugins["exporters"].components)
    assert {"keras", "saved_model", "onnx", "tflite"} <= set(formats)
    records = export_formats(winner, formats, plugins=plugins)
    for name in formats:
        predictor = load_predictor(winner.dir.path / records[name]["path"])
        probabilities = predictor.predict(pixels)
        assert list(probabilities.argmax(axis=1)) == list(expected.argmax(axis=1)), name
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(predictor.predict(mirrored), probabilities, atol=1e-5)
