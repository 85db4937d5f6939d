"""One candidate: build, compile, fit with early stopping, evaluate -> ``TrialResult``."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from automl_core.data import DatasetSplit
from automl_core.rundir import atomic_target, read_json, write_json
from automl_core.space import architecture_scope, augmenter_scope

OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
COMPLETED, FAILED = "completed", "failed"

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrialSpec:
    """Everything needed to run one trial, as plain JSON-able values."""

    trial_id: str
    architecture: str
    augmenter: str
    hp_config: dict[str, Any]
    """keras-tuner ``HyperParameters.get_config()``: the space and this trial's values."""
    trial_dir: str
    epochs: int
    batch_size: int
    patience: int
    seed: int
    objective: str = "val_accuracy"


@dataclass
class TrialResult:
    """What a trial produced; saved as ``metrics.json`` + ``history.json``."""

    trial_id: str
    architecture: str
    augmenter: str
    status: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    val_accuracy: float | None = None
    val_loss: float | None = None
    params: int | None = None
    train_seconds: float = 0.0
    epochs_run: int = 0
    best_epoch: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    error: str | None = None
    """The failure reason in one line; the traceback is in ``traceback.txt``."""
    model_path: str | None = None
    hp_config: dict[str, Any] = field(default_factory=dict, repr=False)
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def score(self, objective: str) -> float:
        return getattr(self, objective)

    def save(self, directory: Path) -> None:
        metrics = asdict(self)
        write_json(Path(directory) / "history.json", metrics.pop("history"))
        write_json(Path(directory) / "metrics.json", metrics)

    @classmethod
    def load(cls, directory: Path) -> TrialResult:
        result = cls(**read_json(Path(directory) / "metrics.json"))
        history = Path(directory) / "history.json"
        result.history = read_json(history) if history.exists() else {}
        return result


def run_trial(
    spec: TrialSpec,
    data: DatasetSplit,
    architecture: Callable,
    augmenter: Callable,
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Train one candidate; any exception becomes a failed result, never a crash."""
    result = TrialResult(spec.trial_id, spec.architecture, spec.augmenter, FAILED)
    result.started_at = time.time()
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        _train(spec, data, architecture, augmenter, on_epoch, result)
        result.status = COMPLETED
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}".splitlines()[0]
        (trial_dir / "traceback.txt").write_text(traceback.format_exc())
    result.ended_at = time.time()
    result.save(trial_dir)
    return result


def _train(spec, data, architecture, augmenter, on_epoch, result: TrialResult) -> None:
    import keras
    import keras_tuner

    from automl_core import recipe
    from automl_core.space import active_values

    keras.utils.set_random_seed(spec.seed)
    hp = keras_tuner.HyperParameters.from_config(spec.hp_config)
    try:
        with architecture_scope(hp, spec.architecture):
            model = architecture(hp, data.input_shape, data.num_classes)
            plan = recipe.declare(hp, model, batch_size=spec.batch_size)
        with augmenter_scope(hp, spec.augmenter):
            augment = augmenter(hp)
    finally:  # what was declared joins the space even when the build fails
        result.hyperparameters = active_values(hp)
        result.hp_config = hp.get_config()
    result.params = int(model.count_params())

    train, val = train_val_pipelines(data, plan.batch_size, seed=spec.seed, augment=augment)
    stopper = keras.callbacks.EarlyStopping(
        monitor=spec.objective,
        mode=OBJECTIVES[spec.objective],
        patience=spec.patience,
        restore_best_weights=True,
    )
    callbacks = [keras.callbacks.TerminateOnNaN(), stopper]
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, _floats(logs))
            )
        )
    start = time.perf_counter()
    result.history = recipe.fit(model, plan, train, val, epochs=spec.epochs, callbacks=callbacks)
    result.train_seconds = time.perf_counter() - start
    result.epochs_run = len(result.history.get("loss", []))
    if any(not math.isfinite(v) for v in result.history.get("loss", [])):
        raise FloatingPointError("training diverged (loss became NaN or infinite)")
    result.best_epoch = (stopper.best_epoch + 1) if stopper.best_weights is not None else None
    val_loss, val_accuracy = model.evaluate(val, verbose=0)
    result.val_loss, result.val_accuracy = float(val_loss), float(val_accuracy)
    with atomic_target(Path(spec.trial_dir) / "model.keras") as tmp:
        model.save(tmp)
    result.model_path = str(Path(spec.trial_dir) / "model.keras")


def train_val_pipelines(data: DatasetSplit, batch_size: int, *, seed: int, augment=None):
    """The training pipeline (shuffled, augmented) and the validation one (neither)."""
    n = data.num_classes
    train = pipeline(data.x_train, data.y_train, batch_size, n, seed=seed, augment=augment)
    return train, pipeline(data.x_val, data.y_val, batch_size, n)


def pipeline(x, y, batch_size: int, num_classes: int, *, seed: int | None = None, augment=None):
    """A tf.data pipeline of float32 raw-pixel batches with one-hot labels.

    Shuffled (seeded) and augmented if asked. An augmenter with a true ``mixes_labels``
    attribute (MixUp, CutMix) gets and returns ``{"images": ..., "labels": ...}``; any
    other gets and returns the images alone.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda images, labels: (tf.cast(images, "float32"), tf.one_hot(labels, num_classes))
    )
    if augment is not None:
        dataset = dataset.map(partial(_augment, augment), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augment(augment, images, labels):
    if getattr(augment, "mixes_labels", False):
        mixed = augment({"images": images, "labels": labels}, training=True)
        return mixed["images"], mixed["labels"]
    return augment(images, training=True), labels


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}
