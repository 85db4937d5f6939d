"""The per-trial training recipe: optimizer, weight decay, label smoothing, schedule, batch size.

Every value is a hyperparameter declared inside the architecture's scope, after the
architecture's factory ran, so an architecture sets its own defaults (or its own search
ranges) by declaring the same names first, exactly like ``learning_rate``. A model with a
frozen backbone (a nested model with ``trainable=False``) also gets the transfer-learning
values: how many of the backbone's top layers to fine-tune afterwards, at what share of
the learning rate, for what share of the epochs. The head trains alone first; the second
phase recompiles at the lower rate with the top layers trainable, batch normalisation
frozen (the backbone is called in inference mode). Early stopping keeps the best epoch
of both phases: fine-tuning that only makes the model worse is undone.

``nesterov`` (SGD's Nesterov momentum, on) and ``ema`` (the momentum of a moving average
of the weights, 0 = none) are fixed unless the architecture declares them: with ``ema``,
the average replaces the weights at the end of every epoch, so what is validated, kept by
early stopping and saved is the averaged model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle")
ONECYCLE_WARMUP = 0.3
"""One-cycle spends this share of the steps warming up from ``learning_rate / 25``."""
NO_DECAY = ["bias", "gamma", "beta"]
SMOOTHED_EPOCHS = 3
"""Early stopping judges an epoch by its mean score over this many epochs, its own last."""
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
    fine_tune_share: float = 0.5
    """Share of the epochs that fine-tune (the rest train the head alone, first)."""
    nesterov: bool = True
    """SGD only: Nesterov momentum."""
    ema: float = 0.0
    """Momentum of the weights' moving average (per step); 0: no averaging."""


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
        nesterov=hp.Fixed("nesterov", True),
        ema=hp.Fixed("ema", 0.0),
    )
    if frozen_backbones(model):
        values["fine_tune_layers"] = hp.Choice("fine_tune_layers", [0, 20, 50], default=0)
        values["fine_tune_lr_factor"] = hp.Choice("fine_tune_lr_factor", [0.01, 0.1], default=0.1)
        values["fine_tune_share"] = hp.Choice("fine_tune_share", [0.25, 0.5, 0.75], default=0.5)
    return Recipe(**values)


def fit(
    model,
    recipe: Recipe,
    train,
    val,
    *,
    epochs: int,
    callbacks: list,
    initial_epoch: int = 0,
    plan: Callable[[int, float], int] | None = None,
) -> dict:
    """Compile and train from ``initial_epoch`` to ``epochs``; with fine-tuning, the last
    ``fine_tune_share`` of the epochs trains the backbone's top layers too, at the lower
    learning rate.

    ``plan(epochs_done, seconds_per_epoch)``, asked after every epoch, may move the end
    (never past ``epochs``): training stops there and the learning-rate schedule is
    re-planned to end there too. Returns the merged history of the epochs trained here.
    """
    steps = int(train.cardinality())
    end = Planned(epochs, plan)
    merged: dict[str, list[float]] = {}
    first = initial_epoch
    for tuning in (False, True):
        if tuning and not recipe.fine_tune_layers:
            break
        if first >= end.last(recipe, tuning):
            continue
        if tuning:
            for backbone in frozen_backbones(model):
                unfreeze_top(backbone, recipe.fine_tune_layers)
        scale = recipe.fine_tune_lr_factor if tuning else 1.0
        schedule = _compile(model, recipe, steps, end.last(recipe, tuning) - first, scale)
        history = model.fit(
            train,
            validation_data=val,
            epochs=end.last(recipe, tuning),
            initial_epoch=first,
            verbose=0,
            callbacks=[*callbacks, end.callback(recipe, tuning, schedule, steps, first)],
            shuffle=False,  # the pipeline shuffles, seeded
        )
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(v) for v in values)
        first += len(history.history.get("loss", []))
        if first < end.last(recipe, tuning):
            break  # stopped early: patience, the deadline or the user
    return merged


class Planned:
    """Where training ends: ``epochs``, or sooner when the plan says so."""

    def __init__(self, epochs: int, plan: Callable[[int, float], int] | None):
        self.most, self.epochs, self.plan = epochs, epochs, plan

    def last(self, recipe: Recipe, tuning: bool) -> int:
        """The end of the current phase: the first epochs train the head alone when there
        is a fine-tuning phase (at least one, and one is left to fine-tune)."""
        if recipe.fine_tune_layers and not tuning and self.epochs > 1:
            head = math.ceil(self.epochs * (1 - recipe.fine_tune_share))
            return min(self.epochs - 1, max(1, head))
        return self.epochs

    def callback(self, recipe: Recipe, tuning: bool, schedule, steps: int, first: int):
        """A Keras callback that re-plans after each epoch, from that epoch's duration."""
        import keras

        planned = self

        class Replan(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if planned.plan is None:
                    return
                seconds = time.perf_counter() - self.started
                wanted = planned.plan(epoch + 1, seconds)
                planned.epochs = max(epoch + 1, min(planned.most, wanted))
                last = planned.last(recipe, tuning)
                schedule.replan(steps * (last - first))
                if epoch + 1 >= last:
                    self.model.stop_training = True

        return Replan()


def early_stopping(monitor: str, mode: str, patience: int, val_images: int | None = None):
    """Keras early stopping that restores the best weights of the whole training: its
    best epoch is kept from one ``fit`` (phase) to the next, its patience starts again.

    An epoch is judged by the mean of its score and those of the ``SMOOTHED_EPOCHS - 1``
    before it, and of the epochs whose mean is within the noise of the best (one
    standard error of an accuracy on ``val_images`` images; a loss: equal only), the
    latest is kept: it has trained the longest, at the lowest rate of a schedule planned
    to end with the training. On 40 validation images, picking the single best epoch
    kept a lucky 1.000 at epoch 4 of 60 (0.90-0.95 from epoch 6 on), and the winner
    retrained for 4 epochs scored 0.825 on held-out photos where 60 epochs scored 0.87."""
    import keras

    class KeepBest(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            self.wait = self.stopped_epoch = 0

        def on_epoch_end(self, epoch, logs=None):
            value = self.get_monitor_value(logs)
            if value is None:
                return
            if self.monitor_op is None:
                self._set_monitor_op()
            recent.append(value)
            current = sum(recent[-SMOOTHED_EPOCHS:]) / len(recent[-SMOOTHED_EPOCHS:])
            improved = self.best is None or self._is_improvement(current, self.best)
            self.wait = 0 if improved else self.wait + 1
            if improved:
                self.best = current
            if improved or abs(self.best - current) <= self.noise(self.best):
                self.best_epoch, self.best_weights = epoch, self.model.get_weights()
            if self.wait >= self.patience and epoch > 0:
                self.stopped_epoch = epoch
                self.model.stop_training = True

        def noise(self, best: float) -> float:
            if mode != "max" or not val_images:
                return 0.0
            return accuracy_noise(best, val_images)

    recent: list[float] = []
    stopper = KeepBest(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True)
    stopper.best, stopper.best_weights, stopper.best_epoch = None, None, 0
    return stopper


def accuracy_noise(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` images, its estimate
    smoothed as Agresti and Coull's "plus four" interval does, so that a perfect score
    on a few dozen images has noise too: 1.0 on 40 images is 0.033 (one image in 40 is
    noise), 0.85 on 5,000 is 0.005."""
    smoothed = (accuracy * images + 2) / (images + 4)
    return math.sqrt(smoothed * (1 - smoothed) / images)


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
    from automl_core.training.schedule import WarmupCosine

    peak = recipe.learning_rate * scale
    if recipe.schedule == "onecycle":
        return WarmupCosine(peak / 25, peak, ONECYCLE_WARMUP, total_steps)
    return WarmupCosine(0.0, peak, recipe.warmup, total_steps)


def _compile(model, recipe: Recipe, steps: int, epochs: int, scale: float = 1.0):
    """Compile for ``epochs`` of ``steps`` steps; returns the learning-rate schedule.
    Accuracy and balanced accuracy are logged for training and validation alike."""
    import keras

    from automl_core.training.evaluate import balanced_accuracy_metric

    schedule = learning_rate_schedule(recipe, steps * epochs, scale)
    model.compile(
        optimizer=optimizer(recipe, schedule, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            balanced_accuracy_metric(model.output_shape[-1]),
        ],
    )
    return schedule


def optimizer(recipe: Recipe, schedule, steps_per_epoch: int):
    """The recipe's optimizer; with ``ema``, the weights' average is swapped in after
    every ``steps_per_epoch`` steps (and by ``model.fit`` at its end)."""
    import keras

    common = dict(weight_decay=recipe.weight_decay)
    if recipe.ema:
        common |= dict(
            use_ema=True, ema_momentum=recipe.ema, ema_overwrite_frequency=steps_per_epoch
        )
    if recipe.optimizer == "sgd":
        chosen = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=recipe.nesterov, **common)
    else:
        chosen = keras.optimizers.AdamW(schedule, **common)
    chosen.exclude_from_weight_decay(var_names=NO_DECAY)
    return chosen
