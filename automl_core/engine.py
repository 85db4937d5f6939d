"""The search loop: oracle -> candidates -> executor slots -> results -> oracle, then the winner.

The run directory is the whole state (config, data split, oracle, trials), written
atomically as the search goes, so an interrupted or killed search resumes where it was.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automl_core.budget import Pace
from automl_core.data import DatasetSplit, load_split, save_split, split
from automl_core.errors import UsageError
from automl_core.export import publish_search
from automl_core.plugins import Plugins, load_plugins, normalize_source
from automl_core.rundir import RunDir, read_json, write_json
from automl_core.space import ARCHITECTURE, AUGMENTER, from_config, initial_space
from automl_core.testset import evaluate_test_set
from automl_core.trial import (
    COMPLETED,
    FAILED,
    OBJECTIVES,
    REFIT,
    STOPPED,
    TrialResult,
    TrialSpec,
)
from automl_core.winner import save_winner

POLL_SECONDS = 1.0


@dataclass
class SearchConfig:
    """A search's settings; saved as ``config.json``."""

    source: str
    dataset: str = "image_folder"
    architectures: list[str] = field(default_factory=lambda: ["*"])
    augmenters: list[str] = field(default_factory=lambda: ["*"])
    tuner: str = "random"
    executor: str = "local"
    max_trials: int | None = 10
    """Most trials; ``None`` (only with a time budget): as many as the budget allows."""
    time_budget: float | None = None
    """Seconds the whole search may take, winner export included."""
    refit: bool | None = None
    """Retrain the winner on train+validation; ``None``: when the budget allows it."""
    epochs: int = 20
    batch_size: int | None = None
    """``None``: 32 for small data, doubling up to 256 while an epoch keeps 40+ steps."""
    patience: int = 5
    val_split: float = 0.2
    test: str | None = None
    """A separate test folder the winner is scored on (``--test``)."""
    image_size: int | None = None
    seed: int = 0
    objective: str = "val_accuracy"
    max_failures: int = 5
    workers: int | None = None
    """CPU trials at once (default 1); on GPUs, trials per GPU."""
    devices: str | None = None
    """GPU ids to use (``"0,2"``); default: every visible GPU."""
    precision: str = "float32"
    ray_address: str | None = None
    out: str | None = None
    plugins: list[str] = field(default_factory=list)
    export: list[str] = field(default_factory=list)
    """Formats exported (and verified) after the search, beside ``winner/model.keras``."""
    quantize: str | None = None

    def validate(self) -> None:
        if self.max_trials is None and self.time_budget is None:
            raise UsageError("give a trial count (max_trials), a time budget, or both")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UsageError(f"time budget must be positive, got {self.time_budget}")
        for name in ("max_trials", "epochs", "batch_size", "max_failures"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.patience < 0:
            raise UsageError(f"patience must be 0 or more, got {self.patience}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise UsageError(f"image size must be between 8 and 1024, got {self.image_size}")
        if self.objective not in OBJECTIVES:
            raise UsageError(
                f"unknown objective {self.objective!r} (choose from {', '.join(OBJECTIVES)})"
            )
        if self.precision not in ("float32", "mixed"):
            raise UsageError(f"precision must be float32 or mixed, got {self.precision!r}")


@dataclass
class SearchRun:
    """One search in progress: what observers and executors are handed."""

    config: SearchConfig
    run_dir: RunDir
    plugins: Plugins
    architectures: list[str]
    augmenters: list[str]
    data: DatasetSplit | None = None
    dataset_summary: dict = field(default_factory=dict)
    results: list[TrialResult] = field(default_factory=list)
    """Every trial that ended (completed or failed), in the order they ended."""
    leaderboard: list[TrialResult] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    spent_before: float = 0.0
    """Seconds this search ran before it was resumed."""
    interrupted: bool = False

    @property
    def winner_path(self) -> Path:
        return self.run_dir.winner / "model.keras"

    @property
    def elapsed(self) -> float:
        return self.spent_before + time.time() - self.started_at


def auto_batch_size(train_images: int) -> int:
    """Larger batches train faster per image on a CPU; small data needs enough steps."""
    size = 32
    while size < 256 and train_images >= size * 2 * 40:
        size *= 2
    return size


def rank(results: list[TrialResult], objective: str) -> list[TrialResult]:
    """Completed trials, best first; ties go to the faster trial."""
    sign = -1 if OBJECTIVES[objective] == "max" else 1
    done = [r for r in results if r.status == COMPLETED]
    return sorted(done, key=lambda r: (sign * r.score(objective), r.train_seconds))


def search(config: SearchConfig, plugins: Plugins | None = None) -> SearchRun:
    """Run a whole search and return it, leaderboard ranked and winner saved."""
    config.validate()
    plugins = plugins or load_plugins(config.plugins)
    config.plugins = [normalize_source(p) for p in config.plugins]
    names = _resolve_names(config, plugins)
    if config.out is not None and RunDir(Path(config.out)).config.exists():
        raise UsageError(
            f"{config.out!r} already holds a search; continue it with --resume {config.out} "
            "or choose another --out"
        )
    loader = plugins["datasets"].get(config.dataset).obj
    images = loader(config.source, image_size=config.image_size)
    data = split(images, config.val_split, config.seed)
    run_dir = RunDir(Path(config.out)) if config.out else RunDir.new()
    run = SearchRun(config, run_dir, plugins, *names, data=data)
    save_split(data, run_dir.data)
    run.dataset_summary = images.summary() | {
        "train": len(data.y_train),
        "val": len(data.y_val),
        "val_split": config.val_split,
        "seed": config.seed,
    }
    write_json(run_dir.config, asdict(config))
    write_json(run_dir.dataset, run.dataset_summary)
    return _drive(run, _make_oracle(run))


def resume(run_dir: str | Path, plugins: Plugins | None = None, **changes) -> SearchRun:
    """Continue a search from its run directory: finished trials are kept, not re-run.

    ``changes`` override saved settings that may differ on resume (``max_trials``).
    """
    directory = RunDir(Path(run_dir))
    if not directory.config.exists():
        raise UsageError(f"{str(run_dir)!r} is not a search run directory (no config.json)")
    config = SearchConfig(**read_json(directory.config))
    for name, value in changes.items():
        if value is not None:
            setattr(config, name, value)
    config.validate()
    plugins = plugins or load_plugins()
    plugins.load(config.plugins)  # the search's own -p plugins, wherever it is resumed
    run = SearchRun(config, directory, plugins, *_resolve_names(config, plugins))
    run.data = load_split(directory.data)
    run.dataset_summary = read_json(directory.dataset)
    state = read_json(directory.state) if directory.state.exists() else {}
    run.spent_before = state.get("elapsed_seconds", 0.0)
    oracle = _make_oracle(run)
    oracle.reload()
    oracle.max_trials = config.max_trials
    run.results = [TrialResult.load(directory.trial(t)) for t in oracle.end_order]
    run.leaderboard = rank(run.results, config.objective)
    return _drive(run, oracle)


def _resolve_names(config: SearchConfig, plugins: Plugins) -> tuple[list[str], list[str]]:
    """The architectures and augmenters to try; any unknown name fails before any work."""
    architectures = [c.name for c in plugins["architectures"].select(config.architectures)]
    augmenters = [c.name for c in plugins["augmenters"].select(config.augmenters)]
    for kind, name in (
        ("tuners", config.tuner),
        ("executors", config.executor),
        ("datasets", config.dataset),
    ):
        plugins[kind].get(name)
    return architectures, augmenters


def _make_oracle(run: SearchRun):
    import keras_tuner

    config = run.config
    tuner = run.plugins["tuners"].get(config.tuner).obj
    oracle = tuner(
        objective=keras_tuner.Objective(config.objective, OBJECTIVES[config.objective]),
        max_trials=config.max_trials,
        max_epochs=config.epochs,
        seed=config.seed + 1,  # keras-tuner oracles take 0 to mean "pick a random seed"
        hyperparameters=initial_space(run.architectures, run.augmenters),
    )
    oracle.verbose = 0  # the rich report owns the terminal
    oracle.max_consecutive_failed_trials = None  # the engine counts failures itself
    oracle._set_project_dir(str(run.run_dir.path), "oracle")
    return oracle


class _Loop:
    """Keeps every executor slot busy until the tuner, the trial count or the time
    budget is done, or the user stops it."""

    def __init__(self, run: SearchRun, oracle, executor):
        self.run, self.oracle, self.executor = run, oracle, executor
        self.running: dict[str, object] = {}  # trial id -> keras-tuner Trial
        # Running trials whose candidates have not declared their hyperparameters yet.
        # No new trial is drawn until they have: the space is then complete, so the
        # same seed gives the same candidates however many trials run at once.
        self.unbuilt: set[str] = set()
        self.tuner_ids = 0
        self.failures_in_a_row = 0
        self.pace = Pace(run.results)
        budget = run.config.time_budget
        self.deadline = None if budget is None else time.time() + budget - run.spent_before
        self.portfolio = _portfolio(run, oracle)
        # trials that were running when the search stopped: run them again first
        self.rerun = list(oracle.ongoing_trials.values())
        oracle.ongoing_trials.clear()

    def go(self) -> None:
        for trial in list(self.rerun):  # finished but not recorded before a crash
            saved = self.run.run_dir.trial(trial.trial_id) / "metrics.json"
            if saved.exists() and read_json(saved)["status"] in (COMPLETED, FAILED):
                self.rerun.remove(trial)
                self.oracle.ongoing_trials[self._tuner_id()] = trial
                self._finish(trial, TrialResult.load(saved.parent))
        while True:
            exhausted = self._fill_slots()
            if not self.running and (exhausted or self.run.interrupted):
                return
            for result in self.executor.wait(self, POLL_SECONDS):
                self.unbuilt.discard(result.trial_id)
                self._finish(self.running.pop(result.trial_id), result)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def _fill_slots(self) -> bool:
        """Start trials on free slots; True when there is nothing to start now."""
        while not self.run.interrupted and self.executor.free_slots() > 0:
            if self.unbuilt:
                return False
            if self.remaining() <= self.pace.shortest_trial():
                return True  # no trial fits in the time left
            if len(self.run.results) + len(self.running) >= (self.run.config.max_trials or 1e9):
                return True
            tuner_id = self._tuner_id()
            if self.rerun:
                trial = self.rerun.pop(0)
                self.oracle.ongoing_trials[tuner_id] = trial
            else:
                trial = self.oracle.create_trial(tuner_id)
                if trial.status != "RUNNING":
                    # with trials still running the space may grow: ask again later
                    return True
                if self.portfolio:
                    self._make_default(trial, *self.portfolio.pop(0))
            spec = self._spec(trial)
            self.running[trial.trial_id] = trial
            self.unbuilt.add(trial.trial_id)
            self.run.plugins.hook.trial_start(run=self.run, spec=spec)
            self.executor.submit(spec)
        return False

    def _make_default(self, trial, architecture: str, augmenter: str) -> None:
        """Warm start: this trial trains ``architecture`` at its defaults instead."""
        values = trial.hyperparameters.values
        tuner_values = {k: v for k, v in values.items() if k.startswith("tuner/")}
        trial.hyperparameters.values = tuner_values | {
            ARCHITECTURE: architecture,
            AUGMENTER: augmenter,
        }
        self.oracle._record_values(trial)  # as create_trial does, for the values it runs
        self.oracle._save_trial(trial)
        self.oracle.save()

    def _tuner_id(self) -> str:
        self.tuner_ids += 1
        return f"slot-{self.tuner_ids}"

    def _spec(self, trial) -> TrialSpec:
        config = self.run.config
        values = trial.hyperparameters.values
        architecture = values[ARCHITECTURE]
        epochs = int(values.get("tuner/epochs", config.epochs))
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        promoted = values.get("tuner/trial_id")
        if "tuner/epochs" not in values:  # epochs scale with the time left
            epochs = max(1, self.pace.epochs_within(architecture, self.remaining(), epochs))
        return TrialSpec(
            trial_id=trial.trial_id,
            architecture=architecture,
            augmenter=values[AUGMENTER],
            hp_config=trial.hyperparameters.get_config(),
            trial_dir=str(self.run.run_dir.trial(trial.trial_id)),
            epochs=epochs,
            batch_size=config.batch_size or auto_batch_size(len(self.run.data.y_train)),
            patience=config.patience,
            seed=config.seed,
            objective=config.objective,
            deadline=self.deadline,
            initial_epoch=initial_epoch if promoted else 0,
            warm_start=str(self.run.run_dir.trial(promoted) / "model.keras") if promoted else None,
        )

    def refit(self) -> TrialResult | None:
        """Train the winner again on train+validation for its best epoch count, if wanted
        and if the time left allows; ``None`` when not done."""
        run, best = self.run, self.run.leaderboard[0]
        epochs = best.best_epoch or best.epochs_run
        data = run.data
        share = (len(data.y_train) + len(data.y_val)) / len(data.y_train)
        needed = self.pace.overhead + share * epochs * self.pace.epoch_seconds.get(
            best.architecture, 0.0
        )
        if run.interrupted or run.config.refit is False or epochs < 1:
            return None
        if run.config.refit is None and needed > self.remaining():
            return None
        spec = TrialSpec(
            trial_id=REFIT,
            architecture=best.architecture,
            augmenter=best.augmenter,
            hp_config=best.hp_config,
            trial_dir=str(run.run_dir.trial(REFIT)),
            epochs=epochs,
            batch_size=run.config.batch_size or auto_batch_size(len(data.y_train)),
            patience=epochs,
            seed=run.config.seed,
            objective=run.config.objective,
            deadline=None if run.config.refit else self.deadline,
            train_on_all=True,
        )
        run.plugins.hook.trial_start(run=run, spec=spec)
        self.executor.submit(spec)
        results = []
        while not results:
            results = self.executor.wait(self, POLL_SECONDS)
        refit = results[0]
        run.plugins.hook.trial_end(run=run, result=refit)
        return refit if refit.status == COMPLETED and refit.epochs_run >= epochs else None

    def trial_built(self, spec: TrialSpec, hp_config: dict) -> None:
        """The candidate declared its hyperparameters: the tuner may now sample them."""
        if spec.trial_id != REFIT:
            self.oracle.update_space(from_config(hp_config))
            self.unbuilt.discard(spec.trial_id)

    def trial_epoch(self, spec: TrialSpec, epoch: int, logs: dict[str, float]) -> None:
        self.run.plugins.hook.trial_epoch_end(run=self.run, spec=spec, epoch=epoch, logs=logs)

    def _finish(self, trial, result: TrialResult) -> None:
        run = self.run
        if result.status == STOPPED:  # interrupted by the user: stays open for --resume
            run.plugins.hook.trial_end(run=run, result=result)
            return
        if result.hp_config:  # the space grows by what the candidate declared
            trial.hyperparameters = from_config(result.hp_config)
        if result.status == COMPLETED:
            metrics = {"val_accuracy": result.val_accuracy, "val_loss": result.val_loss}
            self.oracle.update_trial(trial.trial_id, metrics)
        trial.status = "COMPLETED" if result.status == COMPLETED else "FAILED"
        trial.message = result.error
        self.oracle.end_trial(trial)
        run.results.append(result)
        self.pace.learn(result)
        run.leaderboard = rank(run.results, run.config.objective)
        write_json(run.run_dir.leaderboard, [_leaderboard_row(r) for r in run.leaderboard])
        _save_state(run, "running")
        run.plugins.hook.trial_end(run=run, result=result)
        self.failures_in_a_row = self.failures_in_a_row + 1 if result.status == FAILED else 0
        if self.failures_in_a_row >= run.config.max_failures:
            raise UsageError(
                f"{self.failures_in_a_row} trials failed in a row (last: {result.error}); "
                f"stopping. Tracebacks and logs are in {run.run_dir.path / 'trials'}"
            )


def _drive(run: SearchRun, oracle) -> SearchRun:
    run.plugins.hook.search_start(run=run)
    executor = run.plugins["executors"].get(run.config.executor).obj(run)
    loop = _Loop(run, oracle, executor)
    status, refit = "interrupted", None
    try:
        with _graceful_interrupt(run, executor):
            loop.go()
            if run.leaderboard:
                refit = loop.refit()
        status = "interrupted" if run.interrupted else "finished"
    finally:
        executor.close()
        _save_state(run, status)
    if run.leaderboard:
        save_winner(run, refit)
        evaluate_test_set(run)
        publish_search(run)  # the model card, and the --export formats verified
    _save_state(run, status)
    run.plugins.hook.search_end(run=run, leaderboard=run.leaderboard)
    return run


class _graceful_interrupt:
    """First Ctrl+C: start no new trials, let running ones end their epoch. Second: stop now."""

    def __init__(self, run: SearchRun, executor):
        self.run, self.executor, self.previous = run, executor, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame):
        if self.run.interrupted:
            self.executor.stop(now=True)
            raise KeyboardInterrupt
        self.run.interrupted = True
        self.executor.stop(now=False)
        print(
            "\nautoml: stopping: no new trials; running trials end after their current "
            "epoch (Ctrl+C again to stop at once)",
            file=sys.stderr,
        )


def _save_state(run: SearchRun, status: str) -> None:
    budget, elapsed = run.config.time_budget, run.elapsed
    state = {
        "status": status,
        "elapsed_seconds": elapsed,
        "time_budget": budget,
        "overshoot_seconds": None if budget is None else max(0.0, elapsed - budget),
        "updated_at": time.time(),
    }
    write_json(run.run_dir.state, state)


def _portfolio(run: SearchRun, oracle) -> list[tuple[str, str]]:
    """Warm start: each architecture not tried yet, at its defaults, cheapest first,
    with the augmenter of its known-good recipe when that one is selected."""
    if run.plugins["tuners"].get(run.config.tuner).info.get("warm_start") is False:
        return []
    tried = {t.hyperparameters.values.get(ARCHITECTURE) for t in oracle.trials.values()}
    registry = run.plugins["architectures"]
    chosen = []
    for name in run.architectures:
        if name not in tried:
            info = registry.get(name).info
            augmenter = info.get("augmenter")
            chosen.append(
                (
                    info.get("cost", float("inf")),
                    name,
                    augmenter if augmenter in run.augmenters else run.augmenters[0],
                )
            )
    return [(name, augmenter) for _, name, augmenter in sorted(chosen, key=lambda c: c[0])]


def _leaderboard_row(result: TrialResult) -> dict:
    row = asdict(result)
    row.pop("history")
    row.pop("hp_config")
    return row
