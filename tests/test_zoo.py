"""Every registered architecture and augmenter, the training recipe and backbone weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from automl_core.data.dataset import DatasetSplit
from automl_core.plugin.manager import load_plugins
from automl_core.training import recipe
from automl_core.training.space import architecture_scope, augmenter_scope, initial_space
from automl_core.training.trial import (
    TrialResult,
    TrialSpec,
    _epoch_plan,
    run_trial,
    shipped,
    train_val_pipelines,
)
from automl_plugins import airbench, backbones

PLUGINS = load_plugins()
SHAPES = [(16, 16, 1), (32, 32, 3), (96, 96, 3)]
TINY = {
    "baseline_cnn": {"filters": 16, "dense_units": 32},
    "resnet": {"width": 16, "depth": 0},
    "airbench": {"width": 32},
    "vit": {"width": 64, "depth": 2, "heads": 2, "tokens_per_side": 4},
} | {name: {"image_size": 32} for name in backbones.BACKBONES}
"""Small hyperparameters, declared before the factory runs, so each build stays quick."""


def tiny_data(shape, n_train=8, n_val=4, classes=3, seed=0) -> DatasetSplit:
    rng = np.random.default_rng(seed)
    return DatasetSplit(
        rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        np.arange(n_train, dtype=np.int32) % classes,
        rng.integers(0, 256, (n_val, *shape), dtype=np.uint8),
        np.arange(n_val, dtype=np.int32) % classes,
        [f"c{i}" for i in range(classes)],
    )


def build(name, shape, num_classes=3, fixed=None, factory=None):
    """Build ``name`` as a trial does, with ``fixed`` values declared first."""
    hp = initial_space([name], ["none"])
    with architecture_scope(hp, name):
        for key, value in (TINY.get(name, {}) | (fixed or {})).items():
            hp.Fixed(key, value)
        factory = factory or PLUGINS["architectures"].get(name).obj
        model = factory(hp, shape, num_classes)
        plan = recipe.declare(hp, model, batch_size=8)
    return model, plan


def cases() -> list[tuple[str, tuple[int, int, int]]]:
    """Every architecture at every shape, except the backbones: they share one input path
    (``backbones.backbone``), so each is built at the smallest grey shape and one at all;
    the embedding candidates need weights files (``tests/test_transfer.py`` has them)."""
    registry = PLUGINS["architectures"]
    names = [n for n in registry.names() if not registry.get(n).info.get("requires_weights")]
    return [
        (name, shape)
        for name in names
        for shape in SHAPES
        if name not in backbones.BACKBONES or shape == SHAPES[0] or name == "mobilenet_v3_small"
    ]


@pytest.mark.parametrize(
    ("name", "shape"), cases(), ids=lambda c: c if isinstance(c, str) else "x".join(map(str, c))
)
def test_architecture_trains_saves_and_reloads(name, shape, tmp_path):
    keras.utils.set_random_seed(0)
    data = tiny_data(shape)
    model, _ = build(name, shape)
    # one eager step: tracing a graph for the big backbones would cost more than the step
    model.compile(optimizer="adam", loss="categorical_crossentropy", run_eagerly=True)
    loss = model.train_on_batch(data.x_train.astype("float32"), np.eye(3)[data.y_train])
    assert np.isfinite(loss)

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    images = data.x_val.astype("float32")
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    assert expected.shape == (len(images), 3)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-4)
    got = keras.ops.convert_to_numpy(reloaded(images, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in PLUGINS["augmenters"].names() if n != "none"])
def test_augmenter_changes_training_batches_only(name):
    keras.utils.set_random_seed(0)
    data = tiny_data((16, 16, 3), n_train=16, n_val=8)
    hp = initial_space(["baseline_cnn"], [name])
    with augmenter_scope(hp, name):
        augment = PLUGINS["augmenters"].get(name).obj(hp)
    plain, _ = train_val_pipelines(data, 16, seed=0)
    train, val = train_val_pipelines(data, 16, seed=0, augment=augment)
    (plain_x, plain_y), (x, y) = next(iter(plain)), next(iter(train))
    assert x.shape == plain_x.shape and y.shape == plain_y.shape
    assert not np.allclose(x, plain_x)
    if getattr(augment, "mixes_labels", False):
        assert not np.allclose(y, plain_y)
        np.testing.assert_allclose(np.sum(y, axis=1), 1.0, rtol=1e-5)
    else:
        np.testing.assert_array_equal(y, plain_y)
    val_x, val_y = next(iter(val))
    np.testing.assert_array_equal(val_x, data.x_val.astype("float32"))
    np.testing.assert_array_equal(val_y, np.eye(3)[data.y_val])


def test_flip_translate_mirrors_and_shifts_pixels_without_inventing_any():
    import tensorflow as tf

    from automl_plugins.augment import random_flip_translate

    tf.random.set_seed(0)
    images = np.arange(64 * 8 * 8, dtype="float32").reshape(64, 8, 8, 1)
    flipped = random_flip_translate(tf.constant(images), 0.0).numpy()
    mirrored = [np.array_equal(out, img[:, ::-1]) for out, img in zip(flipped, images, strict=True)]
    kept = [np.array_equal(out, img) for out, img in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48
    moved = random_flip_translate(tf.constant(images), 0.25).numpy()
    pairs = list(zip(moved, images, strict=True))
    assert all(set(out.ravel()) <= set(img.ravel()) for out, img in pairs)
    assert sum(not np.array_equal(out, img) for out, img in pairs) > 48


def test_architecture_defaults_override_the_recipe():
    _, plan = build("resnet", (32, 32, 3), fixed={"width": 16})
    assert (plan.label_smoothing, plan.schedule, plan.batch_size) == (0.2, "onecycle", 8)
    _, plan = build("airbench", (32, 32, 3))
    assert (plan.optimizer, plan.label_smoothing, plan.schedule) == ("sgd", 0.2, "onecycle")
    _, plan = build("baseline_cnn", (32, 32, 3))
    assert (plan.optimizer, plan.label_smoothing, plan.schedule) == ("adamw", 0.0, "cosine")
    assert plan.fine_tune_layers == 0


def test_recipe_options_make_the_intended_optimizer():
    _, plan = build("airbench", (16, 16, 3))
    assert (plan.optimizer, plan.nesterov, plan.ema) == ("sgd", True, 0.9)
    sgd = recipe.optimizer(plan, 0.1, steps_per_epoch=7)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov
    assert (sgd.use_ema, sgd.ema_momentum, sgd.ema_overwrite_frequency) == (True, 0.9, 7)
    _, plan = build("airbench", (16, 16, 3), fixed={"nesterov": False, "ema": 0.0})
    sgd = recipe.optimizer(plan, 0.1, steps_per_epoch=7)
    assert not sgd.nesterov and not sgd.use_ema
    _, plan = build("baseline_cnn", (16, 16, 3))
    assert (plan.nesterov, plan.ema) == (True, 0.0)
    adamw = recipe.optimizer(plan, 1e-3, steps_per_epoch=7)
    assert isinstance(adamw, keras.optimizers.AdamW) and not adamw.use_ema


@pytest.mark.parametrize("width", [32, 64])
def test_airbench_widths(width):
    model, _ = build("airbench", (16, 16, 3), fixed={"width": width})
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs[1:]] == [width] * 2 + [4 * width] * 4
    assert convs[0].name == airbench.WHITEN and not convs[0].trainable


def test_airbench_prepare_whitens_the_first_layer():
    rng = np.random.default_rng(0)
    coarse = np.repeat(np.repeat(rng.integers(0, 256, (64, 4, 4, 3)), 4, axis=1), 4, axis=2)
    images = ((coarse + rng.integers(0, 256, (64, 16, 16, 3))) // 2).astype(np.uint8)
    raw = np.corrcoef(airbench.patch_vectors(images / 255.0), rowvar=False)
    assert raw[0, 3] > 0.3  # neighbouring pixels of a channel correlate
    model, _ = build("airbench", (16, 16, 3))
    airbench.whiten_first_layer(model, images)
    layer = model.get_layer(airbench.WHITEN)
    outputs = keras.Model(model.input, layer.output)(images.astype("float32"))
    half = keras.ops.convert_to_numpy(outputs).reshape(-1, 24)[:, :12]  # the rest: negated
    np.testing.assert_allclose(half.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(half, rowvar=False), np.eye(12), atol=0.05)


def test_airbench_trains_in_bfloat16_through_the_engine_and_ships_in_float32(tmp_path):
    component = PLUGINS["architectures"].get("airbench")
    hp = initial_space(["airbench"], ["flip_crop_cutout"])
    with architecture_scope(hp, "airbench"):
        hp.Fixed("width", 32)
    spec = TrialSpec(
        "0",
        "airbench",
        "flip_crop_cutout",
        hp.get_config(),
        str(tmp_path / "t"),
        epochs=1,
        batch_size=4,
        patience=1,
        seed=0,
    )
    data = tiny_data((16, 16, 3))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        result = run_trial(
            spec,
            data,
            component.obj,
            PLUGINS["augmenters"].get("flip_crop_cutout").obj,
            prepare=component.info["prepare"],
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.status == "completed", result.error
    assert result.epochs_run == 1 and result.hyperparameters["airbench/ema"] == 0.9
    reloaded = keras.models.load_model(result.model_path)
    assert {layer.dtype_policy.name for layer in reloaded.layers} == {"float32"}
    fresh, _ = build("airbench", (16, 16, 3))
    whiten = reloaded.get_layer(airbench.WHITEN).get_weights()
    assert not np.allclose(whiten[0], fresh.get_layer(airbench.WHITEN).get_weights()[0])
    probabilities = reloaded.predict(data.x_val.astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_schedule_warms_up_then_decays():
    plan = recipe.Recipe(1e-2, "sgd", 1e-4, 0.0, "onecycle", 0.0, 32)
    schedule = recipe.learning_rate_schedule(plan, total_steps=100)
    rates = [float(schedule(step)) for step in (0, 30, 99)]
    assert rates[0] == pytest.approx(1e-2 / 25)
    assert rates[1] == pytest.approx(1e-2)
    assert rates[2] < rates[0]


def test_training_stops_where_the_plan_says_and_the_schedule_ends_there():
    data = tiny_data((16, 16, 3))
    model, plan = build("baseline_cnn", (16, 16, 3))
    train, val = train_val_pipelines(data, 4, seed=0)
    asked = []

    def two_epochs_fit(done, seconds):
        asked.append(done)
        assert seconds > 0
        return 2

    history = recipe.fit(model, plan, train, val, epochs=5, callbacks=[], plan=two_epochs_fit)
    assert len(history["loss"]) == 2 and asked == [1, 2]
    assert int(model.optimizer.iterations) == 4  # 2 epochs of 2 batches
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_the_first_epochs_tracing_does_not_end_a_short_trial():
    import time

    spec = TrialSpec("0", "a", "none", {}, "unused", 100, 32, 100, 0, seconds=30.0)
    result = TrialResult("0", "a", "none", "running", train_images=160, batch_size=32)
    result.started_at = time.time() - 10  # 20 s of its share left
    plan = _epoch_plan(spec, result)
    # a first epoch of 7.4 s, nearly all tracing: two more such epochs would fit
    assert plan(1, 7.4) == 3
    # its 5 steps at their steady 0.05 s and a 0.2-s validation pass: 40 and more do
    result.step_seconds, result.val_seconds = 0.05, 0.2
    assert plan(1, 7.4) > 40


def test_a_model_trained_in_mixed_precision_ships_in_float32():
    shape = (16, 16, 3)
    data = tiny_data(shape)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, _ = build("resnet", shape)
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        model.train_on_batch(data.x_train.astype("float32"), np.eye(3)[data.y_train])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)
    copy = shipped(model, lambda: build("resnet", shape)[0])
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    for got, want in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    images = data.x_val.astype("float32")
    np.testing.assert_allclose(copy.predict(images), model.predict(images), atol=0.05)


def _backbone_weights(tmp_path):
    """A random-init backbone saved by the test itself: the local-weights file."""
    keras.utils.set_random_seed(1)
    source = backbones.backbone_model("mobilenet_v3_small", 32)
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    return source, path


def _nested_backbone(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def test_backbone_loads_a_local_weights_file_and_freezes_it(tmp_path):
    source, path = _backbone_weights(tmp_path)
    factory = backbones.backbone("mobilenet_v3_small", weights=str(path))
    keras.utils.set_random_seed(2)  # a different init, so equality means loaded
    model, plan = build("mobilenet_v3_small", (16, 16, 3), factory=factory)
    base = _nested_backbone(model)
    assert not base.trainable
    assert plan.fine_tune_layers == 0
    for got, want in zip(base.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_fine_tuning_trains_only_the_top_layers(tmp_path):
    source, path = _backbone_weights(tmp_path)
    factory = backbones.backbone("mobilenet_v3_small", weights=str(path))
    model, plan = build(
        "mobilenet_v3_small", (16, 16, 3), fixed={"fine_tune_layers": 20}, factory=factory
    )
    data = tiny_data((16, 16, 3))
    train, val = train_val_pipelines(data, 8, seed=0)
    history = recipe.fit(model, plan, train, val, epochs=2, callbacks=[])
    assert len(history["loss"]) == 2
    base = _nested_backbone(model)
    top = [layer for layer in base.layers[-20:] if layer.trainable and layer.weights]
    bottom = [layer for layer in base.layers[:-20] if layer.weights]
    assert top and bottom

    def changed(layer):
        pairs = zip(layer.get_weights(), source.get_layer(layer.name).get_weights(), strict=True)
        return any(not np.array_equal(a, b) for a, b in pairs)

    assert all(changed(layer) for layer in top)
    assert not any(changed(layer) for layer in bottom)


def test_missing_imagenet_file_fails_the_trial_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    factory = backbones.backbone("efficientnet_b0", weights="imagenet")
    hp = initial_space(["efficientnet_b0"], ["none"])
    spec = TrialSpec(
        "0",
        "efficientnet_b0",
        "none",
        hp.get_config(),
        str(tmp_path / "t"),
        epochs=1,
        batch_size=8,
        patience=1,
        seed=0,
    )
    result = run_trial(spec, tiny_data((16, 16, 3)), factory, lambda hp: None)
    assert result.status == "failed"
    missing = tmp_path / "keras" / "models" / "efficientnetb0_notop.h5"
    assert result.error == (
        f"UsageError: efficientnet_b0: weights file {missing} not found "
        f"(put efficientnetb0_notop.h5 in {missing.parent}, or use weights none)"
    )


def test_default_weights_are_imagenet_only_when_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backbones.default_weights("resnet50_v2", 96) == "none"
    cached = backbones.imagenet_file("mobilenet_v2", 128)
    assert cached.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert backbones.default_weights("mobilenet_v2", 128) == "imagenet"
