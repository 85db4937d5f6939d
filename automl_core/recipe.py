"""The per-trial training recipe: optimizer, weight decay, label smoothing, schedule, batch size.

Every value is a hyperparameter declared inside the architecture's scope, after the
architecture's factory ran, so an architecture sets its own defaults (or its own search
ranges) by declaring the same names first, exactly like ``learning_rate``. A model with a
frozen backbone (a nested model with ``trainable=False``) also gets the transfer-learning
values: how many of the backbone's top layers to fine-tune afterwards, at what share of
the learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle")
ONECYCLE_WARMUP = 0.3
"""One-cycle spends this share of the steps warming up from ``learning_rate / 25``."""
NO_DECAY = ["bias", "gamma", "beta"]
"""Variables (by name) weight decay leaves alone: biases and normalisation scales."""


@dataclass(frozen=True)
class Recipe:
    """This trial's training values, read once from ``hp``."""

    learning_rate: float
    optimizer: str
    weight_decay: float
    label_smoothing: float
    schedule: str
    warmup: float
    """Share of all steps spent warming the learning rate up (cosine schedule)."""
    batch_size: int
    fine_tune_layers: int = 0
    fine_tune_lr_factor: float = 0.1


def declare(hp, model, batch_size: int) -> Recipe:
    """Declare the recipe on ``hp`` (inside the architecture's scope) and read its values.

    ``batch_size`` is the search's ``--batch-size``: the default, unless the
    architecture declared ``batch_size`` itself.
    """
    values = dict(
        learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3),
        optimizer=hp.Choice("optimizer", list(OPTIMIZERS), default="adamw"),
        weight_decay=hp.Float("weight_decay", 1e-5, 1e-1, sampling="log", default=4e-3),
        label_smoothing=hp.Float("label_smoothing", 0.0, 0.2, step=0.1, default=0.0),
        schedule=hp.Choice("schedule", list(SCHEDULES), default="cosine"),
        warmup=hp.Float("warmup", 0.0, 0.2, step=0.05, default=0.05),
        batch_size=hp.Fixed("batch_size", batch_size),
    )
    if frozen_backbones(model):
        values["fine_tune_layers"] = hp.Choice("fine_tune_layers", [0, 20, 50], default=0)
        values["fine_tune_lr_factor"] = hp.Choice("fine_tune_lr_factor", [0.01, 0.1], default=0.1)
    return Recipe(**values)


def fit(
    model, recipe: Recipe, train, val, *, epochs: int, callbacks: list, initial_epoch: int = 0
) -> dict:
    """Compile and train from ``initial_epoch`` to ``epochs``; with fine-tuning, the second
    half of the epochs trains the backbone's top layers too, at the lower learning rate.
    Returns the merged history of the epochs trained here."""
    steps = int(train.cardinality())
    head_epochs = epochs
    if recipe.fine_tune_layers and epochs > 1:
        head_epochs = math.ceil(epochs / 2)
    merged: dict[str, list[float]] = {}
    phases = [(initial_epoch, head_epochs, 1.0)]
    if head_epochs < epochs:
        phases.append((max(initial_epoch, head_epochs), epochs, recipe.fine_tune_lr_factor))
    for first, last, scale in phases:
        if first >= last:
            continue
        if scale != 1.0:
            for backbone in frozen_backbones(model):
                unfreeze_top(backbone, recipe.fine_tune_layers)
        _compile(model, recipe, steps * (last - first), scale)
        history = model.fit(
            train,
            validation_data=val,
            epochs=last,
            initial_epoch=first,
            verbose=0,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles, seeded
        )
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(v) for v in values)
    return merged


def frozen_backbones(model) -> list:
    """The nested models of ``model`` that are frozen (a pretrained backbone)."""
    import keras

    return [
        layer for layer in model.layers if isinstance(layer, keras.Model) and not layer.trainable
    ]


def unfreeze_top(backbone, count: int) -> None:
    """Make the last ``count`` layers of ``backbone`` trainable; batch norm stays frozen."""
    import keras

    backbone.trainable = True
    for index, layer in enumerate(backbone.layers):
        in_top = index >= len(backbone.layers) - count
        layer.trainable = in_top and not isinstance(layer, keras.layers.BatchNormalization)


def learning_rate_schedule(recipe: Recipe, total_steps: int, scale: float = 1.0):
    """Cosine decay after a linear warm-up, or one-cycle (long warm-up from lr/25)."""
    import keras

    peak = recipe.learning_rate * scale
    if recipe.schedule == "onecycle":
        start, warm = peak / 25, round(total_steps * ONECYCLE_WARMUP)
    else:
        start, warm = 0.0, round(total_steps * recipe.warmup)
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(peak, max(1, total_steps))
    return keras.optimizers.schedules.CosineDecay(
        start, max(1, total_steps - warm), warmup_target=peak, warmup_steps=warm
    )


def _compile(model, recipe: Recipe, total_steps: int, scale: float = 1.0) -> None:
    import keras

    schedule = learning_rate_schedule(recipe, total_steps, scale)
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
