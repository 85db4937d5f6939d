"""Every hook a plugin can implement, one per concern, grouped by phase.

Collection hooks (``register_*``) return nothing: they are handed a ``register`` callback
and call it once per component. The callback remembers which plugin made the call, so
every registered name knows its origin. Each docstring shows how the engine calls the
component; docs/hooks.md says the same, and tests/test_docs_match_code.py checks both
against a real search. Observer hooks are told what happened and return
nothing; their results are ignored.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

import pluggy

import automl_core  # only to name the engine's types below, never imported from here

hookspec = pluggy.HookspecMarker("automl")


class Register(Protocol):
    """The callback a ``register_*`` hook receives."""

    def __call__(
        self,
        name: str,
        obj: Any,
        *,
        description: str = "",
        tags: tuple[str, ...] = (),
        **info: Any,
    ) -> None: ...


# --- collection: what a search can use ---------------------------------------------------


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset loaders: ``register(name, loader)``.

    ``loader(source: str, *, image_size: int | None) -> automl_core.data.dataset.ImageData``
    turns a user's source (a folder path, say) into decoded uint8 images, integer labels
    and class names; ``image_size`` is ``--image-size`` or ``None`` (the loader's
    default). The engine splits what it returns and loads a ``--test`` folder with it too.
    """


@hookspec
def register_augmenters(register: Register) -> None:
    """Register training-time augmenters: ``register(name, factory)``.

    ``factory(hp) -> keras.layers.Layer | None`` declares its hyperparameters on the
    keras-tuner ``hp`` it is handed and returns a layer (or any callable taking
    ``training=``) applied to training batches only, never to validation batches or
    inside the saved model; ``None`` means no augmentation. Batches are float32 raw pixels
    0..255 with one-hot float labels. The layer is called with the image batch and
    returns the images, unless it has a true ``mixes_labels`` attribute (MixUp, CutMix):
    then it is called with ``{"images": ..., "labels": ...}`` and returns that dict, with
    the labels mixed as the images were.
    """


@hookspec
def register_architectures(register: Register) -> None:
    """Register model architectures: ``register(name, factory, tags=("cnn",))``.

    ``factory(hp, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model``
    declares its hyperparameters on ``hp`` and returns an uncompiled model that takes raw
    pixel values (0..255, float32) and outputs class probabilities (softmax). A factory
    may declare the training recipe's hyperparameters (``learning_rate``,
    ``weight_decay``, ``schedule``, ...; see ``automl_core.training.recipe``) first to set their
    defaults for this architecture. Optional ``info`` for the warm start, which trains
    every architecture at its defaults first: ``cost=`` (relative training time at its
    defaults per epoch, ``baseline_cnn`` = 1: the prior before its pace is measured;
    cheapest first), ``sizes=`` (``{"width": {32: 1.0, 64: 4.0}}``: a size hyperparameter
    and each value's relative cost; a budgeted search's final run takes the largest that
    trains 10 epochs in the time left), ``variants=`` (``{"image_size": [96, 224]}``:
    values that make different models rather than cheaper or dearer ones, such as a
    frozen backbone's input side; the warm start screens one candidate for each and the
    final run keeps the chosen one's), ``preferred_up_to=`` (an image side: on images
    no larger it comes first) and ``augmenter=`` (the augmenter of its
    known-good recipe). ``mixed_precision=True`` declares the model trains correctly
    under a mixed dtype policy (standard Keras layers do; custom layers must compute in
    ``self.compute_dtype``; give the output layer ``dtype="float32"``): ``--precision
    auto`` then trains it in bfloat16 on CPUs with AMX. The saved model is built again in
    float32 whatever it trained in. ``prepare=fn`` initialises the model from data:
    ``fn(model, images)`` is called once per trial, after the build and before training
    (not when the trial starts from saved weights), with up to 5,000 raw uint8 training
    images, and sets weights in place. ``weights=`` (``WeightsFile``s of
    ``automl_core.training.weights``) names the pretrained files the factory loads from
    Keras's cache by default: a search fetches the missing ones before its clock starts
    (unless ``--offline``), and ``automl weights`` lists, fetches and imports them;
    ``requires_weights=True``: without any of those files the search leaves it out.
    ``guides="name"``: this candidate's screening score says whether architecture
    ``name`` is worth screening (of those it guides, the best guide's is). A
    layer named ``features`` marks the end of a frozen part whose outputs may be computed
    once and cached (``automl_core.training.features``).
    """


@hookspec
def register_tuners(register: Register) -> None:
    """Register search strategies: ``register(name, factory)``.

    ``factory(*, objective, max_trials, max_epochs, seed, hyperparameters)`` returns a
    ``keras_tuner.Oracle``. The engine drives the oracle directly (``create_trial`` /
    ``update_trial`` / ``end_trial``), so any keras-tuner Oracle works; trials an oracle
    creates with ``tuner/epochs``, ``tuner/initial_epoch`` and ``tuner/trial_id`` values
    (Hyperband) train that long, continuing from that trial's weights. Pass
    ``warm_start=False`` as info for a tuner that must choose every trial itself (grid).
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register winner export formats: ``register(name, exporter)``.

    ``exporter(model, path: pathlib.Path, metadata: dict) -> pathlib.Path`` writes the
    trained Keras model in its format under the folder ``path`` and returns the file it
    wrote. ``metadata`` is ``winner.json`` plus ``quantize`` (a mode or ``None``) and, for
    ``int8``, ``representative_images``; the ``tags`` given to ``register`` name the
    quantize modes the exporter supports.
    """


@hookspec
def register_executors(register: Register) -> None:
    """Register places trials run: ``register(name, factory)``.

    ``factory(run: automl_core.engine.run.SearchRun) -> Executor`` (the protocol in
    ``automl_core.execution.executors``): ``free_slots()``, ``submit(spec)``, ``wait(listener,
    timeout) -> [TrialResult]``, ``stop(now=...)``, ``close()``. Chosen with ``--executor``.
    """


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment trackers: ``register(name, factory)``.

    ``factory(run: automl_core.engine.run.SearchRun)`` returns a plugin object whose
    observer hooks (below) log the search somewhere. Chosen with ``--track``, it is
    registered for that search only, before ``search_start``; its ``close()``, if it has
    one, is called when the search ends, by an error too.
    """


@hookspec
def register_commands(subcommands: argparse._SubParsersAction) -> None:
    """Add ``automl`` subcommands: ``subcommands.add_parser(name)``.

    Give each parser ``set_defaults(handler=func)``; ``func(args) -> int | None`` runs
    the command and returns its exit code. Keep heavy imports inside ``func``.
    """


# --- observers: what a search did ---------------------------------------------------------


@hookspec
def search_start(run: automl_core.engine.run.SearchRun) -> None:
    """Called once the data is loaded and split, before the first trial."""


@hookspec
def trial_start(
    run: automl_core.engine.run.SearchRun, spec: automl_core.training.trial.TrialSpec
) -> None:
    """Called when a trial is handed to an executor.

    The winner's retraining on all data after the search (``--refit``) is reported like a
    trial too, with ``spec.trial_id == "refit"`` and ``spec.train_on_all`` set; it is
    not part of the leaderboard.
    """


@hookspec
def trial_epoch_end(
    run: automl_core.engine.run.SearchRun,
    spec: automl_core.training.trial.TrialSpec,
    epoch: int,
    logs: dict[str, float],
) -> None:
    """Called after each training epoch of a running trial (``epoch`` counts from 1)."""


@hookspec
def trial_end(
    run: automl_core.engine.run.SearchRun, result: automl_core.training.trial.TrialResult
) -> None:
    """Called when a trial ended, after its result is saved under ``trials/<id>/``.

    ``result.status`` is ``completed``, ``failed`` (``result.error`` says why) or
    ``stopped`` (the user interrupted the search; ``--resume`` runs it again).
    """


@hookspec
def search_end(
    run: automl_core.engine.run.SearchRun, leaderboard: list[automl_core.training.trial.TrialResult]
) -> None:
    """Called once at the end of a search with the ranked completed trials."""
