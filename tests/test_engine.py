"""The search engine through its Python API, with throwaway plugins for every hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_automl

from automl_core import hookimpl
from automl_core.data.dataset import ImageData
from automl_core.engine.search import search
from automl_core.engine.settings import SearchConfig
from automl_core.errors import UsageError
from automl_core.execution.executors import InlineExecutor
from automl_core.plugin.manager import load_plugins


def synthetic_images(source: str, *, image_size: int | None = None) -> ImageData:
    """Two classes told apart by brightness, 16x16."""
    rng = np.random.default_rng(0)
    size = image_size or 16
    dark = rng.integers(0, 100, size=(12, size, size, 3))
    light = rng.integers(150, 256, size=(12, size, size, 3))
    return ImageData(
        images=np.concatenate([dark, light]).astype(np.uint8),
        labels=np.repeat(np.arange(2, dtype=np.int32), 12),
        class_names=["dark", "light"],
        source=source,
    )


def mean_colour_model(hp, input_shape, num_classes):
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    hp.Choice("unused_width", [1, 2], default=1)
    return keras.Model(inputs, outputs)


def broken_model(hp, input_shape, num_classes):
    hp.Int("attempt", 0, 1000)
    raise RuntimeError("this architecture cannot be built")


class Recorder:
    """A throwaway plugin: contributes one of everything and records every event."""

    def __init__(self):
        self.events: list[tuple] = []
        self.specs = []

    @hookimpl
    def register_datasets(self, register):
        register("memory", synthetic_images)

    @hookimpl
    def register_architectures(self, register):
        register("mean_colour", mean_colour_model)
        register("broken", broken_model)

    @hookimpl
    def register_augmenters(self, register):
        register("brighten", lambda hp: lambda images, training: images * 1.0)

    @hookimpl
    def register_tuners(self, register):
        from automl_plugins.tuners import random_search

        register("recorded_random", random_search)

    @hookimpl
    def register_executors(self, register):
        recorder = self

        class RecordingExecutor(InlineExecutor):
            def submit(self, spec):
                recorder.specs.append(spec)
                super().submit(spec)

        register("recording", RecordingExecutor)

    @hookimpl
    def search_start(self, run):
        self.events.append(("search_start", run.dataset_summary["images"]))

    @hookimpl
    def trial_start(self, run, spec):
        self.events.append(("trial_start", spec.trial_id))

    @hookimpl
    def trial_epoch_end(self, run, spec, epoch, logs):
        self.events.append(("trial_epoch_end", spec.trial_id, epoch, "val_accuracy" in logs))

    @hookimpl
    def trial_end(self, run, result):
        self.events.append(("trial_end", result.trial_id, result.status))

    @hookimpl
    def search_end(self, run, leaderboard):
        self.events.append(("search_end", len(leaderboard)))


def run_search(tmp_path, recorder, **overrides):
    plugins = load_plugins()
    plugins.manager.register(recorder, name="recorder")
    settings = dict(
        source="synthetic",
        dataset="memory",
        architectures=["mean_colour"],
        augmenters=["none"],
        tuner="recorded_random",
        executor="recording",
        max_trials=2,
        epochs=2,
        out=str(tmp_path / "run"),
    )
    return search(SearchConfig(**(settings | overrides)), plugins)


def test_every_observer_hook_sees_the_search_in_order(tmp_path):
    recorder = Recorder()
    run = run_search(tmp_path, recorder)
    assert recorder.events[:10] == [
        ("search_start", 24),
        ("trial_start", "0"),
        ("trial_epoch_end", "0", 1, True),
        ("trial_epoch_end", "0", 2, True),
        ("trial_end", "0", "completed"),
        ("trial_start", "1"),
        ("trial_epoch_end", "1", 1, True),
        ("trial_epoch_end", "1", 2, True),
        ("trial_end", "1", "completed"),
        ("trial_start", "refit"),
    ]
    refit_epochs = run.leaderboard[0].best_epoch
    assert recorder.events[10:] == [
        *(("trial_epoch_end", "refit", e, True) for e in range(1, refit_epochs + 1)),
        ("trial_end", "refit", "completed"),
        ("search_end", 2),
    ]
    assert [s.trial_id for s in recorder.specs] == ["0", "1", "refit"]
    assert run.winner_path.exists()
    assert run.dataset_summary["classes"] == ["dark", "light"]


def test_candidate_hyperparameters_join_the_space(tmp_path):
    run = run_search(tmp_path, Recorder())
    first, second = run.results
    assert first.hyperparameters["mean_colour/unused_width"] in (1, 2)
    assert "mean_colour/learning_rate" in first.hyperparameters
    # the second trial was sampled from a space that now holds the declared values
    assert first.hyperparameters != second.hyperparameters


def test_augmenter_plugin_is_used_for_training(tmp_path):
    run = run_search(tmp_path, Recorder(), augmenters=["brighten"], max_trials=1)
    assert run.results[0].augmenter == "brighten"
    assert run.results[0].status == "completed"


def test_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    run = run_search(
        tmp_path, Recorder(), architectures=["mean_colour", "broken"], max_trials=4, seed=3
    )
    statuses = {r.architecture: r.status for r in run.results}
    assert statuses == {"mean_colour": "completed", "broken": "failed"}
    failed = next(r for r in run.results if r.status == "failed")
    assert failed.error == "RuntimeError: this architecture cannot be built"
    traceback = tmp_path / "run" / "trials" / failed.trial_id / "traceback.txt"
    assert "Traceback" in traceback.read_text()
    assert all(r.architecture == "mean_colour" for r in run.leaderboard)


def test_consecutive_failures_stop_the_search(tmp_path):
    with pytest.raises(UsageError, match="2 trials failed in a row"):
        run_search(tmp_path, Recorder(), architectures=["broken"], max_failures=2, max_trials=5)
    metrics = json.loads((tmp_path / "run" / "trials" / "0" / "metrics.json").read_text())
    assert metrics["status"] == "failed"


def test_same_seed_gives_the_same_candidates(tmp_path):
    def candidates(name, seed):
        run = run_search(
            tmp_path / name,
            Recorder(),
            max_trials=3,
            epochs=1,
            augmenters=["none", "brighten"],
            seed=seed,
        )
        return [r.hyperparameters for r in run.results]

    # seed 0 (the default) too: keras-tuner reads an oracle seed of 0 as "random"
    assert candidates("a", 0) == candidates("b", 0)
    assert candidates("c", 7) != candidates("d", 0)


def test_existing_run_directory_is_refused(tmp_path):
    run_search(tmp_path, Recorder(), max_trials=1, epochs=1)
    with pytest.raises(UsageError, match="already holds a search"):
        run_search(tmp_path, Recorder(), max_trials=1, epochs=1)


def test_command_plugin_adds_a_subcommand(tmp_path):
    plugin = tmp_path / "hello.py"
    plugin.write_text(
        "from automl_core import hookimpl\n\n"
        "@hookimpl\n"
        "def register_commands(subcommands):\n"
        "    hello = subcommands.add_parser('hello', help='say hello')\n"
        "    hello.add_argument('name')\n"
        "    hello.set_defaults(handler=lambda args: print(f'hello {args.name}'))\n"
    )
    out = run_automl("hello", "world", "-p", plugin)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello world"
