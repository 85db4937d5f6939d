"""A search from start to end: data, oracle, the trial loop, then the winner.

The run directory is the whole state (config, data split, oracle, trials), written
atomically as the search goes, so an interrupted or killed search resumes where it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from automl_core.data.cache import cache_root
from automl_core.data.dataset import load_split, save_split, split
from automl_core.engine.environment import record_resume, record_start
from automl_core.engine.loop import SearchLoop, graceful_interrupt
from automl_core.engine.oracle import Oracle
from automl_core.engine.run import SearchRun, leaderboard_row, rank, save_state
from automl_core.engine.settings import SearchConfig
from automl_core.errors import UsageError
from automl_core.execution.devices import plan_slots
from automl_core.execution.executors import is_disk_full
from automl_core.plugin.manager import Plugins, load_plugins, normalize_source
from automl_core.results.export import publish_search
from automl_core.results.testset import evaluate_test_set
from automl_core.results.winner import save_winner
from automl_core.rundir import RunDir, read_json, write_json
from automl_core.training.balance import class_weights, weights_note
from automl_core.training.precision import PrecisionChoice, resolve_precision
from automl_core.training.trial import OBJECTIVES, TrialResult
from automl_core.training.weights import any_cached, fetch_for_search, is_offline, mirror_url

__all__ = ["SearchRun", "rank", "resume", "search"]


def search(config: SearchConfig, plugins: Plugins | None = None) -> SearchRun:
    """Run a whole search and return it, leaderboard ranked and winner saved. Its time
    budget counts from here: loading the images is part of it, fetching pretrained
    weights is not."""
    started = time.time()
    config.validate()
    plugins = plugins or load_plugins(config.plugins)
    config.plugins = [normalize_source(p) for p in config.plugins]
    names = _resolve_names(config, plugins)
    if config.out is not None:
        RunDir(Path(config.out)).check_new(config.source)  # before any image is decoded
    loader = plugins["datasets"].get(config.dataset).obj
    images = loader(config.source, image_size=config.image_size)
    data = split(images, config.val_split, config.seed)
    started += _fetch_weights(config, plugins, names[0])
    names = (_with_weights(plugins, names[0]), names[1])
    run_dir = RunDir(Path(config.out)) if config.out else RunDir.new()
    run = SearchRun(config, run_dir, plugins, *names, data=data, started_at=started)
    save_split(data, run_dir.data)
    run.dataset_summary = images.summary() | {
        "train": len(data.y_train),
        "val": len(data.y_val),
        "val_split": round(len(data.y_val) / (len(data.y_train) + len(data.y_val)), 4),
        "seed": config.seed,
        "class_weights": class_weights(config.class_weights, data.y_train, data.class_names),
    }
    note = weights_note(config.class_weights, data.y_train, data.class_names)
    run.dataset_summary["warnings"] = images.warnings + ([note] if note else [])
    write_json(run_dir.dataset, run.dataset_summary)
    record_start(run, _record_precision(run))
    write_json(run_dir.config, asdict(config))  # last: a run with it can be resumed
    with _stop_if_disk_full(run_dir), _tracking(run):
        return _drive(run, _make_oracle(run))


def resume(run_dir: str | Path, plugins: Plugins | None = None, **changes) -> SearchRun:
    """Continue a search from its run directory: finished trials are kept, not re-run.

    ``changes`` override saved settings that may differ on resume (``max_trials``).
    """
    started = time.time()
    directory = RunDir(Path(run_dir))
    config = _saved_config(directory)
    for name, value in changes.items():
        if value is not None:
            setattr(config, name, value)
    config.validate()
    plugins = plugins or load_plugins()
    plugins.load(config.plugins)  # the search's own -p plugins, wherever it is resumed
    names = _resolve_names(config, plugins)
    started += _fetch_weights(config, plugins, names[0])
    names = (_with_weights(plugins, names[0]), names[1])
    run = SearchRun(config, directory, plugins, *names, started_at=started)
    run.data = load_split(directory.data)
    run.dataset_summary = read_json(directory.dataset)
    state = read_json(directory.state) if directory.state.exists() else {}
    run.spent_before = state.get("elapsed_seconds", 0.0)
    oracle = _make_oracle(run)
    pending = oracle.reload(config.max_trials)
    ended = [directory.trial(t) for t in oracle.end_order]  # a skipped trial has no folder
    run.results = [TrialResult.load(trial) for trial in ended if trial.metrics.exists()]
    run.leaderboard = rank(run.results, config.objective)
    with _stop_if_disk_full(directory), _tracking(run):
        record_resume(run, _record_precision(run))  # measured on this machine
        # a kill may have come between a trial's end and the leaderboard's update
        write_json(directory.leaderboard, [leaderboard_row(r) for r in run.leaderboard])
        return _drive(run, oracle, pending)


def _resolve_names(config: SearchConfig, plugins: Plugins) -> tuple[list[str], list[str]]:
    """The architectures and augmenters to try; any unknown name fails before any work."""
    architectures = [c.name for c in plugins["architectures"].select(config.architectures)]
    augmenters = [c.name for c in plugins["augmenters"].select(config.augmenters)]
    for kind, name in (
        ("tuners", config.tuner),
        ("executors", config.executor),
        ("datasets", config.dataset),
    ):
        plugins[kind].get(name).require()
    for name in config.track:
        plugins["trackers"].get(name).require()
    return architectures, augmenters


def _fetch_weights(config: SearchConfig, plugins: Plugins, architectures: list[str]) -> float:
    """Fetch the pretrained weights files the architectures declare and the cache lacks;
    the seconds it took, which the time budget does not count."""
    infos = {name: plugins["architectures"].get(name).info for name in architectures}
    return fetch_for_search(
        {name: info.get("weights", ()) for name, info in infos.items()},
        offline=is_offline(config.offline),
        mirror=mirror_url(config.weights_mirror),
        required=frozenset(name for name, info in infos.items() if info.get("requires_weights")),
    )


def _with_weights(plugins: Plugins, architectures: list[str]) -> list[str]:
    """``architectures`` less those registered ``requires_weights`` with none of their
    weights files in the cache (after the fetch)."""
    registry = plugins["architectures"]

    def usable(name: str) -> bool:
        info = registry.get(name).info
        return not info.get("requires_weights") or any_cached(info.get("weights", ()))

    return [name for name in architectures if usable(name)]


def _make_oracle(run: SearchRun) -> Oracle:
    config = run.config
    return Oracle.create(
        run.plugins["tuners"].get(config.tuner).obj,
        objective=config.objective,
        direction=OBJECTIVES[config.objective],
        max_trials=config.max_trials,
        max_epochs=config.epochs,
        seed=config.seed,
        architectures=run.architectures,
        augmenters=run.augmenters,
        run_dir=run.run_dir,
    )


def _saved_config(directory: RunDir) -> SearchConfig:
    """The settings of a run to resume: one line, not a traceback, when they are
    unreadable or the run was written under another run schema."""
    settings = directory.read_config()
    mismatch = directory.schema_mismatch()
    if mismatch:
        raise UsageError(
            f"{mismatch}, so it cannot resume it: resume it with the automl version that "
            "started it, or start a new search"
        )
    try:
        return SearchConfig(**settings)
    except TypeError as error:  # a setting this automl does not have, or one missing
        raise UsageError(
            f"{str(directory.config)!r} does not hold this automl's settings ({error}): "
            "restore it, or start a new search"
        ) from error


def _drive(run: SearchRun, oracle: Oracle, pending: list | None = None) -> SearchRun:
    run.plugins.hook.search_start(run=run)
    executor = run.plugins["executors"].get(run.config.executor).obj(run)
    loop = SearchLoop(run, oracle, executor, pending)
    status, refit = "interrupted", None
    try:
        with graceful_interrupt(run, executor):
            loop.go()
            if run.leaderboard:
                refit = loop.refit()
        status = "interrupted" if run.interrupted else "finished"
    finally:
        executor.close()
        save_state(run, status)
    if run.leaderboard:
        save_winner(run, refit)
        evaluate_test_set(run)
        publish_search(run)  # the model card, and the --export formats verified
    save_state(run, status)
    run.plugins.hook.search_end(run=run, leaderboard=run.leaderboard)
    return run


@contextmanager
def _tracking(run: SearchRun) -> Iterator[None]:
    """The ``--track`` trackers, observing this search only; each one's ``close()``, if
    it has one, is called when the search ends, by an error too."""
    trackers = {
        f"tracker:{name}": run.plugins["trackers"].get(name).obj(run) for name in run.config.track
    }
    for name, tracker in trackers.items():
        run.plugins.manager.register(tracker, name=name)
    try:
        yield
    finally:
        for name, tracker in trackers.items():
            run.plugins.manager.unregister(name=name)
            if hasattr(tracker, "close"):
                tracker.close()


@contextmanager
def _stop_if_disk_full(run_dir: RunDir) -> Iterator[None]:
    """A full disk stops the search with one line (``UsageError``): finished trials are
    kept, and ``--resume`` continues once there is room again."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        written = Path(error.filename or run_dir.path)
        raise UsageError(
            f"the disk at {_mount_point(written)} is full ({error.strerror}; writing "
            f"{written}): finished trials are kept; free some space there, then continue "
            f"with: automl search --resume {run_dir.path}"
        ) from error


def _mount_point(path: Path) -> Path:
    """The mount point of the file system that holds ``path``."""
    path = path.absolute()
    while not os.path.ismount(path):
        path = path.parent
    return path


def _record_precision(run: SearchRun) -> PrecisionChoice:
    """Resolve the search's ``--precision`` for the devices its trials use and write it
    to the run directory (``precision.json``), where the trials read it."""
    slot = plan_slots(run.config.devices, run.config.workers)[0]
    declared = {
        name: bool(run.plugins["architectures"].get(name).info.get("mixed_precision"))
        for name in run.architectures
    }
    choice = resolve_precision(
        run.config.precision,
        on_gpu=slot.is_gpu,
        cache_dir=cache_root(),
        threads=slot.threads,
        declared=any(declared.values()),
    )
    write_json(run.run_dir.precision, choice.record(declared))
    return choice
