"""The training image size: offered below the decoded size, screened small, shipped whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAILURES, make_image_folder, quick_search
from keras.models import load_model

from automl_core.data.dataset import split
from automl_core.plugin.manager import load_plugins
from automl_core.training.input_size import (
    offered_sizes,
    resize_images,
    screen_size,
    size_costs,
)
from automl_core.training.space import initial_space
from automl_core.training.trial import TrialSpec, run_trial

SIDE = 72
"""The decoded size of the test images: 32 and 64 are offered below it."""


def test_sizes_are_offered_below_the_decoded_size_unless_the_user_fixed_it():
    assert offered_sizes(128) == [32, 64, 96, 128]
    assert offered_sizes(72) == [32, 64, 72]
    assert offered_sizes(32) == [] and offered_sizes(20) == []  # nothing smaller to offer
    assert offered_sizes(128, fixed=True) == []  # --image-size 128: train at 128
    assert screen_size([32, 64, 96, 128]) == 64 and screen_size([32, 48]) == 48
    assert size_costs([32, 64, 128]) == {32: 1 / 16, 64: 0.25, 128: 1.0}


def test_halving_resizes_average_each_block_of_pixels():
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    for size, block in ((32, 2), (16, 4)):  # one halving, then two
        means = images.reshape(3, size, block, size, block, 3).astype(float).mean(axis=(2, 4))
        resized = resize_images(images, size)
        assert resized.dtype == np.uint8 and resized.shape == (3, size, size, 3)
        assert np.abs(resized - means).max() <= 0.5 + 1e-3  # rounded to whole pixel values


def trial(name: str, data, tmp_path: Path, values: dict, **spec) -> object:
    plugins = load_plugins([FAILURES])
    hp = initial_space(["small"], ["none"])
    hp.values.update(values)
    settings = dict(epochs=8, batch_size=8, patience=8, seed=0, image_sizes=offered_sizes(SIDE))
    return run_trial(
        TrialSpec(name, "small", "none", hp.get_config(), str(tmp_path / name), **settings | spec),
        data,
        plugins["architectures"].get("small").obj,
        plugins["augmenters"].get("none").obj,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from automl_plugins.image_folder import load_image_folder

    root = tmp_path_factory.mktemp("sized")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        images = load_image_folder(str(make_image_folder(root / "images", size=SIDE)))
    return split(images, None, seed=0)


def test_a_trial_at_a_smaller_size_ships_a_model_that_takes_the_decoded_size(data, tmp_path):
    result = trial("small32", data, tmp_path, {"small/image_size": 32, "small/learning_rate": 0.01})
    assert result.status == "completed", result.error
    assert result.hyperparameters["small/image_size"] == 32
    model = load_model(result.model_path)
    assert model.input_shape == (None, SIDE, SIDE, 3)
    inner = model.layers[-1]  # the network itself, built for 32 pixels
    assert inner.input_shape == (None, 32, 32, 3)
    assert [layer.name for layer in model.layers[1:-1]] == ["resize_36", "resize_32"]
    predictions = model.predict(np.asarray(data.x_val, dtype="float32"), verbose=0)
    assert np.mean(predictions.argmax(axis=1) == data.y_val) == result.val_accuracy


def test_a_continuation_at_a_smaller_size_starts_from_its_parents_weights(data, tmp_path):
    values = {"small/image_size": 32, "small/learning_rate": 0.01}
    parent = trial("parent", data, tmp_path, values)
    # one more epoch at a learning rate too small to move anything: it ends where its
    # parent did, which it cannot without the parent's weights
    still = values | {"small/learning_rate": 1e-7}
    continued = trial(
        "continued",
        data,
        tmp_path,
        still,
        epochs=parent.epochs_run + 1,
        initial_epoch=parent.epochs_run,
        warm_start=parent.model_path,
    )
    assert continued.status == "completed", continued.error
    assert continued.history["val_loss"][0] == pytest.approx(parent.val_loss, abs=1e-3)
    assert parent.val_loss < 0.9  # below chance (ln 3 = 1.1): the weights matter


def test_a_budgeted_search_screens_at_a_small_size_and_sizes_the_final(tmp_path):
    folder = make_image_folder(tmp_path / "images", size=SIDE)
    run = quick_search(folder, tmp_path / "run", max_trials=4, time_budget=300)
    assert run.data.input_shape == (SIDE, SIDE, 3)
    first = run.results[0]
    assert (first.stage, first.hyperparameters["small/image_size"]) == ("screen", 64)
    final = next(r for r in run.results if r.stage == "final")
    # a few images train 10 epochs at the decoded size in far less than the time left
    assert final.hyperparameters["small/image_size"] == SIDE
    assert any("final run at image_size=72" in note for note in run.notes)
    config = json.loads((run.run_dir.path / "config.json").read_text())
    assert config["image_size"] is None
