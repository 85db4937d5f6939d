"""Transfer learning: a pretrained backbone is loaded, its head trains first, then only its
top layers fine-tune at a lower rate with batch norm untouched; the embedding candidates
train a head on features computed once and cached, and a search leaves them out without
weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, quick_search

SIZE = 32
"""The tests' backbone input side: a full MobileNetV2, cheap at this size."""


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras home: no weights file is cached in it."""
    home = tmp_path / "keras-home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def pretrained_file(name: str, size: int):
    """Save a randomly initialised backbone where Keras's cache keeps its ImageNet file;
    returns the saved backbone (its weights are "the pretrained ones")."""
    from automl_plugins.backbones import backbone_model, imagenet_file

    base = backbone_model(name, SIZE)
    base.save(imagenet_file(name, size))  # Keras's legacy .h5, as the published files
    return base


def tinted(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` noisy images per class of two colours, and their labels."""
    rng = np.random.default_rng(seed)
    tints = np.array([[200, 40, 40], [40, 40, 200]])
    labels = np.repeat([0, 1], count)
    noise = rng.integers(-40, 40, size=(len(labels), SIZE, SIZE, 3))
    return np.clip(tints[labels][:, None, None, :] + noise, 0, 255).astype("float32"), labels


def weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    """Each layer's weights, by layer name (layers without weights left out)."""
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_head_trains_first_then_only_the_top_fine_tunes_at_a_lower_rate(keras_home):
    import keras
    import keras_tuner

    from automl_core.training import recipe
    from automl_core.training.trial import pipeline
    from automl_plugins.backbones import build

    pretrained = weights_by_layer(pretrained_file("mobilenet_v2", SIZE))
    hp = keras_tuner.HyperParameters()
    hp.Fixed("fine_tune_layers", 20)
    model = build("mobilenet_v2", hp, (SIZE, SIZE, 3), 2, sizes=[SIZE])
    plan = recipe.declare(hp, model, batch_size=16)
    assert hp.values["weights"] == "imagenet"  # found in the cache, loaded
    [base] = recipe.frozen_backbones(model)
    assert weights_by_layer(base).keys() == pretrained.keys()
    assert all(same(w, pretrained[name]) for name, w in weights_by_layer(base).items())
    head = model.layers[-1]
    head_as_built = head.get_weights()
    snapshots, rates = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((weights_by_layer(base), head.get_weights()))

    x, y = tinted(16, seed=0)
    x_val, y_val = tinted(8, seed=1)
    train = pipeline(x, y, 16, 2, seed=0)
    recipe.fit(model, plan, train, pipeline(x_val, y_val, 16, 2), epochs=2, callbacks=[Record()])

    (head_phase, head_after_1), (tuned, _) = snapshots
    assert all(same(w, pretrained[name]) for name, w in head_phase.items())  # frozen
    assert not same(head_after_1, head_as_built)  # the head trained first
    top = {layer.name for layer in base.layers[-plan.fine_tune_layers :]}
    for layer in (layer for layer in base.layers if layer.weights):
        moved = not same(tuned[layer.name], pretrained[layer.name])
        fine_tuned = layer.name in top and not isinstance(layer, keras.layers.BatchNormalization)
        assert moved == fine_tuned, f"{layer.name}: moved {moved}, fine-tuned {fine_tuned}"
    half = len(rates) // 2  # both phases have one epoch of the same steps
    np.testing.assert_allclose(rates[half:], np.array(rates[:half]) * plan.fine_tune_lr_factor)


def test_early_stopping_keeps_the_best_epoch_across_the_phases():
    import keras

    from automl_core.training import recipe

    x = np.array([[1.0, 0.0], [0.0, 1.0]] * 8, dtype="float32")
    y = keras.utils.to_categorical(np.array([0, 1] * 8), 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    stopper = recipe.early_stopping("val_accuracy", "max", patience=1)
    model.compile(keras.optimizers.SGD(1.0), "categorical_crossentropy", metrics=["accuracy"])
    # epochs are judged on 3-epoch means: 6 epochs end on three at 1.0 however it starts
    model.fit(x, y, validation_data=(x, y), epochs=6, verbose=0, callbacks=[stopper])
    learnt = model.get_weights()
    assert stopper.best == 1.0
    model.set_weights([-w for w in learnt])  # a second phase that only makes it worse
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[stopper])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), learnt, strict=True))


def test_a_lucky_epoch_is_not_kept_and_of_epochs_within_the_noise_the_latest_is():
    import keras

    from automl_core.training import recipe

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    stopper = recipe.early_stopping("val_accuracy", "max", patience=4, val_images=40)
    stopper.set_model(model)
    stopper.on_train_begin()
    # a 40-image validation curve: a lucky 1.000 at epoch 3, a plateau, then a fall
    curve = [0.75, 0.95, 0.75, 1.0, 0.75, 0.9, 0.925, 0.9, 0.925, 0.9, 0.6, 0.6, 0.6]
    for epoch, accuracy in enumerate(curve):
        model.set_weights([np.full_like(w, epoch) for w in model.get_weights()])
        stopper.on_epoch_end(epoch, {"val_accuracy": accuracy})
    # judged by 3-epoch means, the best is epochs 6-8 (0.917); epoch 9 is within one
    # standard error of it on 40 images, the fall is not
    assert stopper.best_epoch == 9 and stopper.best == pytest.approx(0.9167, abs=1e-4)
    assert stopper.model.stop_training and stopper.stopped_epoch == 12
    stopper.on_train_end()
    assert all((w == 9).all() for w in model.get_weights())
    loss = recipe.early_stopping("val_loss", "min", patience=5, val_images=40)
    loss.set_model(model)
    for epoch, value in enumerate([0.5, 0.4, 0.3, 0.6, 0.6]):  # a loss: no noise allowed
        loss.on_epoch_end(epoch, {"val_loss": value})
    assert loss.best_epoch == 2


def test_embedding_candidates_are_left_out_of_a_search_without_weights(keras_home, tmp_path, capfd):
    from automl_core.plugin.manager import load_plugins

    info = load_plugins()["architectures"].get("mobilenet_v2_embedding").info
    assert info["requires_weights"] and info["augmenter"] == "none"
    assert info["guides"] == "mobilenet_v2"  # its score picks the backbone to screen
    # none cached yet (a fetch would bring all): screened at the smallest, middle, largest
    # side, each a model of its own that the final run keeps (no "sizes" to grow into)
    assert info["variants"] == {"image_size": [96, 160, 224]} and "sizes" not in info
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=6)
    run = quick_search(
        folder, tmp_path / "run", architectures=["mobilenet_v2_embedding", "small"], max_trials=1
    )
    assert run.architectures == ["small"]
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "automl: warning: left out, without their pretrained weights in "
        f"{keras_home / 'models'} (offline): mobilenet_v2_embedding"
    ]
    pretrained_file("mobilenet_v2", 128)
    info = load_plugins()["architectures"].get("mobilenet_v2_embedding").info
    assert info["variants"] == {"image_size": [128]}  # only where its weights are


def test_an_embedding_trial_trains_its_head_on_features_computed_once(
    keras_home, isolated_cache, tmp_path, capfd
):
    import keras

    from automl_core.training.features import FOLDER, FeatureStore, frozen_split, image_digests

    base = weights_by_layer(pretrained_file("mobilenet_v2", 96))
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=12)
    run = quick_search(
        folder, tmp_path / "run", architectures=["mobilenet_v2_embedding"], max_trials=2
    )

    log = capfd.readouterr().err
    assert [t.status for t in run.results] == ["completed"] * 2, [t.error for t in run.results]
    assert "features of 24 images: 24 computed" in log  # the first trial
    assert "features of 24 images: 0 computed" in log  # the second: all from the cache
    [store] = (isolated_cache / FOLDER).iterdir()
    assert len(list(store.glob("*.npz"))) == 1
    cached = FeatureStore(store).read()
    features = np.stack([cached[key] for key in image_digests(run.data.x_val)])
    shipped = keras.saving.load_model(run.results[-1].model_path)  # loads in plain Keras
    [backbone] = [layer for layer in shipped.layers if isinstance(layer, keras.Model)]
    assert all(same(w, base[name]) for name, w in weights_by_layer(backbone).items())
    _, head = frozen_split(shipped)
    images = np.asarray(run.data.x_val, dtype="float32")
    np.testing.assert_allclose(
        head.predict(features, verbose=0), shipped.predict(images, verbose=0), atol=1e-5
    )
