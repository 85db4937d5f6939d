"""One candidate: build, compile, fit with early stopping, evaluate -> ``TrialResult``."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from automl_core.data.dataset import DatasetSplit
from automl_core.rundir import TrialDir, atomic_target, read_json, write_json
from automl_core.training import input_size
from automl_core.training.balance import label_weights
from automl_core.training.evaluate import BALANCED_ACCURACY, accuracy, class_scores, cross_entropy
from automl_core.training.space import architecture_scope, augmenter_scope, from_config
from automl_core.training.tta import flip_predictions

OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", BALANCED_ACCURACY: "max"}
"""Each objective (a ``TrialResult`` field, measured on the validation split) and whether
higher or lower is better."""
COMPLETED, FAILED, STOPPED, RUNNING = "completed", "failed", "stopped", "running"
"""A stopped trial was interrupted by the user; a resumed search runs it again. A running
one has no result yet (and ``running`` is also the state of a search still going)."""
FINISH_EPOCHS = 0.25
"""Evaluating and saving a trial, in epochs of its training: kept free before its end."""
REFIT = "refit"
"""The trial id (and folder under ``trials/``) of the winner's retraining on all data."""
PREPARE_IMAGES = 5000
"""At most this many training images are handed to an architecture's ``prepare``."""


class TrialListener(Protocol):
    """Told what a running trial does, from inside its process."""

    def built(self, hp_config: dict[str, Any]) -> None:
        """The model is built: every hyperparameter the candidate uses is declared."""

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """An epoch ended (``epoch`` counts from 1)."""


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
    device: str = "cpu"
    """The slot the trial runs on (``cpu:0``, ``gpu:1``), recorded with its result."""
    deadline: float | None = None
    """Wall-clock time (``time.time()``) at which training stops, keeping its best epoch."""
    seconds: float | None = None
    """The trial's share of a time budget: its epochs are planned to end within it."""
    initial_epoch: int = 0
    """Epochs already trained: with ``warm_start``, training continues from there."""
    warm_start: str | None = None
    """A ``model.keras`` of the same candidate whose weights this trial starts from
    (successive halving promotes a trial by training it further)."""
    train_on_all: bool = False
    """Refit: train on the training and validation images together."""
    train_images: int | None = None
    """Train on the first this many (already shuffled) training images; ``None``: all."""
    stage: str = ""
    """What the scheduling policy ran it for (``engine.policy``: screen, final, ...)."""
    image_sizes: list[int] | None = None
    """The training sizes the candidate may choose from (``training.input_size``);
    ``None``: it trains at the decoded size (or resizes its input itself)."""
    class_weights: dict[str, float] | None = None
    """Each class's weight in the loss, by name (``training.balance``); ``None``: unweighted."""
    fold: int = 0
    """The fold it validates on (``DatasetSplit.fold``), training on the others."""
    fold_of: str | None = None
    """The trial (on fold 0) whose candidate this one measures on another fold."""
    final_of: str | None = None
    """The screened trial whose candidate this one trains at its final size."""

    def save(self) -> None:
        write_json(TrialDir(self.trial_dir).spec, asdict(self))

    @classmethod
    def load(cls, trial_dir: Path | TrialDir) -> TrialSpec:
        return cls(**read_json(TrialDir(trial_dir).spec))


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
    val_accuracy_tta: float | None = None
    """Validation accuracy with flip test-time augmentation."""
    balanced_accuracy: float | None = None
    """The mean of the classes' validation recalls (``training.evaluate``)."""
    macro_f1: float | None = None
    per_class_recall: dict[str, float | None] = field(default_factory=dict)
    """Each class's share of its validation images predicted right, by class name."""
    params: int | None = None
    train_images: int = 0
    """Images each epoch trained on (a refit's include the validation images)."""
    train_seconds: float = 0.0
    epochs_run: int = 0
    """Epochs trained in all, counting the ``initial_epoch`` a promoted trial started from."""
    initial_epoch: int = 0
    best_epoch: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    error: str | None = None
    """The failure reason in one line; the traceback is in ``traceback.txt``."""
    model_path: str | None = None
    device: str = "cpu"
    stage: str = ""
    batch_size: int = 0
    step_seconds: float | None = None
    """Steady seconds per training step: the first step of each fit (tracing, compiling)
    left out."""
    val_seconds: float | None = None
    """Steady seconds per validation pass (the first one, traced, left out if others ran)."""
    fold: int = 0
    fold_of: str | None = None
    final_of: str | None = None
    folds: dict[str, Any] | None = None
    """Filled in by the leaderboard (``engine.run.rank``) for a trial whose candidate was
    validated on several folds: ``{"scores": [...], "mean": ..., "spread": ...}``."""
    hp_config: dict[str, Any] = field(default_factory=dict, repr=False)
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def score(self, objective: str) -> float:
        return getattr(self, objective)

    def save(self, directory: Path | TrialDir) -> None:
        metrics, trial = asdict(self), TrialDir(directory)
        write_json(trial.history, metrics.pop("history"))
        write_json(trial.metrics, metrics)

    @classmethod
    def load(cls, directory: Path | TrialDir) -> TrialResult:
        trial = TrialDir(directory)
        result = cls(**read_json(trial.metrics))
        result.history = read_json(trial.history) if trial.history.exists() else {}
        return result


def run_trial(
    spec: TrialSpec,
    data: DatasetSplit,
    architecture: Callable,
    augmenter: Callable,
    listener: TrialListener | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    prepare: Callable | None = None,
) -> TrialResult:
    """Train one candidate; any exception becomes a failed result, never a crash.

    ``stop_requested`` is asked after every epoch: when it answers yes, training ends
    there and the result is ``stopped`` (the user interrupted the search). ``prepare``
    is the architecture's registered ``prepare(model, images)``, if any.
    """
    result = TrialResult(spec.trial_id, spec.architecture, spec.augmenter, FAILED)
    result.started_at = time.time()
    result.device = spec.device
    result.initial_epoch = spec.initial_epoch
    result.stage = spec.stage
    result.fold, result.fold_of, result.final_of = spec.fold, spec.fold_of, spec.final_of
    data = data.fold(spec.fold)
    if spec.train_on_all:
        data = data.with_validation_in_training()
    elif spec.train_images is not None:
        data = data.with_training_images(spec.train_images)
    result.train_images = len(data.y_train)
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        control = _control_callback(spec, result, listener, stop_requested)
        _train(spec, data, architecture, augmenter, control, result, prepare)
        result.status = STOPPED if control.stopped_by_user else COMPLETED
    except Exception as error:
        result.error = one_line(error)
        TrialDir(trial_dir).traceback.write_text(traceback.format_exc())
    result.ended_at = time.time()
    result.save(trial_dir)
    return result


def trial_end(spec: TrialSpec, started: float) -> float | None:
    """When the trial must stop training: its deadline or the end of its share."""
    ends = [end for end in (spec.deadline, spec.seconds and started + spec.seconds) if end]
    return min(ends) if ends else None


def _control_callback(spec: TrialSpec, result: TrialResult, listener, stop_requested):
    """A Keras callback: report progress, stop on request or at the trial's end, and time
    the steady training steps and validation passes (the traced first ones left out)."""
    import keras

    end = trial_end(spec, result.started_at)
    steps, passes = Timings(), Timings()

    class Control(keras.callbacks.Callback):
        stopped_by_user = False

        def on_train_begin(self, logs=None):
            steps.restart()
            if listener is not None:
                listener.built(result.hp_config)

        def on_train_batch_begin(self, batch, logs=None):
            steps.begin()

        def on_train_batch_end(self, batch, logs=None):
            result.step_seconds = steps.end()
            if end is not None and time.time() >= end:
                self.model.stop_training = True

        def on_test_begin(self, logs=None):
            passes.begin()

        def on_test_end(self, logs=None):
            result.val_seconds = passes.end()

        def on_epoch_end(self, epoch, logs=None):
            result.epochs_run = epoch + 1
            if listener is not None:
                listener.epoch(epoch + 1, _floats(logs))
            if stop_requested():
                self.stopped_by_user = True
                self.model.stop_training = True

    return Control()


class Timings:
    """The steady duration of a repeated action: the first one after each ``restart``
    (TensorFlow traces and compiles it) counts only while nothing else was timed."""

    def __init__(self):
        self.total, self.count, self.first = 0.0, 0, None
        self.skip, self.started = True, 0.0

    def restart(self) -> None:
        self.skip = True

    def begin(self) -> None:
        self.started = time.perf_counter()

    def end(self) -> float:
        """Record one; returns the steady mean so far."""
        seconds = time.perf_counter() - self.started
        if self.skip:
            self.skip = False
            self.first = seconds if self.first is None else self.first
        else:
            self.total += seconds
            self.count += 1
        return self.total / self.count if self.count else self.first


def _train(spec, data, architecture, augmenter, control, result: TrialResult, prepare) -> None:
    import keras

    from automl_core.training import features, recipe
    from automl_core.training.space import active_values

    keras.utils.set_random_seed(spec.seed)
    hp = from_config(spec.hp_config)
    decoded = data.input_shape
    try:
        with architecture_scope(hp, spec.architecture):
            size = input_size.declare(hp, spec.image_sizes)
            if size is not None and size != decoded[0]:
                data = input_size.resized(data, size)
            model = architecture(hp, data.input_shape, data.num_classes)
            plan = recipe.declare(hp, model, batch_size=spec.batch_size)
        with augmenter_scope(hp, spec.augmenter):
            augment = augmenter(hp)
    finally:  # what was declared joins the space even when the build fails
        result.hyperparameters = active_values(hp)
        result.hp_config = hp.get_config()
    result.params = int(model.count_params())
    result.batch_size = plan.batch_size
    if spec.warm_start:  # saved behind its resizing layers, which hold no weights
        input_size.with_input_resizing(model, decoded).load_weights(spec.warm_start)
    elif prepare is not None:  # data-dependent initialisation, before any training
        prepare(model, data.x_train[:PREPARE_IMAGES])

    trained, inputs = features.trained_part(model, plan, augment, data)
    train, val = train_val_pipelines(
        inputs, plan.batch_size, seed=spec.seed, augment=augment, class_weights=spec.class_weights
    )
    stopper = recipe.early_stopping(
        logged(spec.objective), OBJECTIVES[spec.objective], spec.patience, len(data.y_val)
    )
    callbacks = [keras.callbacks.TerminateOnNaN(), stopper, control]
    start = time.perf_counter()
    result.history = recipe.fit(
        trained,
        plan,
        train,
        val,
        epochs=spec.epochs,
        callbacks=callbacks,
        initial_epoch=spec.initial_epoch,
        plan=_epoch_plan(spec, result),
    )
    result.train_seconds = time.perf_counter() - start
    result.epochs_run = spec.initial_epoch + len(result.history.get("loss", []))
    if any(not math.isfinite(v) for v in result.history.get("loss", [])):
        raise FloatingPointError("training diverged (loss became NaN or infinite)")
    result.best_epoch = (stopper.best_epoch + 1) if stopper.best_weights is not None else None
    with architecture_scope(hp, spec.architecture):
        model = shipped(model, lambda: architecture(hp, data.input_shape, data.num_classes))
    val = pipeline(data.x_val, data.y_val, plan.batch_size, data.num_classes)  # images
    plain, mirrored = flip_predictions(model, val)
    result.val_accuracy = accuracy(plain, data.y_val)
    result.val_loss = cross_entropy(plain, data.y_val)
    result.val_accuracy_tta = accuracy(plain + mirrored, data.y_val)
    for name, value in class_scores(plain, data.y_val, data.class_names).items():
        setattr(result, name, value)
    with atomic_target(TrialDir(spec.trial_dir).model) as tmp:
        input_size.with_input_resizing(model, decoded).save(tmp)
    result.model_path = str(TrialDir(spec.trial_dir).model)


def _epoch_plan(spec: TrialSpec, result: TrialResult):
    """How many epochs end within the trial's time, asked after each epoch (``None``
    when the trial has no time limit). An epoch takes what the last one did, or its steps
    at their steady pace and a validation pass when that is less: the first epoch's
    tracing (7 of 7.4 s for a MobileNet on 160 photos) must not end a 21-s screen after
    it. Evaluating and saving at the end take a quarter epoch, or three validation passes
    when that is longer."""
    end = trial_end(spec, result.started_at)
    if end is None:
        return None

    def plan(done: int, epoch_seconds: float) -> int:
        if result.step_seconds and result.batch_size:
            steps = math.ceil(result.train_images / result.batch_size)
            steady = steps * result.step_seconds + (result.val_seconds or 0.0)
            epoch_seconds = min(epoch_seconds, steady)
        finish = max(FINISH_EPOCHS * epoch_seconds, 3 * (result.val_seconds or 0.0))
        left = end - time.time() - finish
        return done + int(max(0.0, left) / epoch_seconds)

    return plan


def shipped(model, build: Callable):
    """The trained ``model`` as it ships: float32 (it may have trained in mixed
    precision) and uncompiled; ``build`` makes the same model again."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build()
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def logged(objective: str) -> str:
    """The name of ``objective`` in an epoch's Keras logs: its validation value."""
    return objective if objective.startswith("val_") else f"val_{objective}"


def train_val_pipelines(
    data: DatasetSplit,
    batch_size: int,
    *,
    seed: int,
    augment=None,
    class_weights: dict[str, float] | None = None,
):
    """The training pipeline (shuffled, augmented, weighted by class if asked) and the
    validation one (none of these)."""
    n = data.num_classes
    weigh = None if class_weights is None else label_weights(class_weights, data.class_names)
    train = pipeline(
        data.x_train, data.y_train, batch_size, n, seed=seed, augment=augment, weigh=weigh
    )
    return train, pipeline(data.x_val, data.y_val, batch_size, n)


def pipeline(
    x,
    y,
    batch_size: int,
    num_classes: int,
    *,
    seed: int | None = None,
    augment=None,
    weigh: Callable | None = None,
):
    """A tf.data pipeline of float32 raw-pixel batches with one-hot labels.

    Shuffled (seeded) and augmented if asked. An augmenter with a true ``mixes_labels``
    attribute (MixUp, CutMix) gets and returns ``{"images": ..., "labels": ...}``; any
    other gets and returns the images alone. ``weigh(labels)``, if given, makes each
    batch's sample weights from its labels after augmenting, so mixed labels weigh as
    the mix of their classes (Keras's own ``class_weight`` takes the largest share).
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
    if weigh is not None:
        dataset = dataset.map(lambda images, labels: (images, labels, weigh(labels)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def one_line(error: BaseException) -> str:
    """``Type: message`` in one line; for errors whose first line only introduces the
    detail (TensorFlow's "Graph execution error:"), the last line that says something."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if message.endswith(":"):
        detail = [line for line in lines[1:] if not line.startswith(("[[", "File ", "Detected"))]
        message = detail[-1] if detail else message
    return f"{type(error).__name__}: {message[:300]}"


def _augment(augment, images, labels):
    if getattr(augment, "mixes_labels", False):
        mixed = augment({"images": images, "labels": labels}, training=True)
        return mixed["images"], mixed["labels"]
    return augment(images, training=True), labels


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}
