"""The search loop: oracle -> candidate -> executor -> result -> oracle, then the winner."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automl_core.data import DatasetSplit, split
from automl_core.errors import UsageError
from automl_core.plugins import Plugins, load_plugins
from automl_core.rundir import RunDir, write_json
from automl_core.space import ARCHITECTURE, AUGMENTER, initial_space
from automl_core.trial import COMPLETED, FAILED, OBJECTIVES, TrialResult, TrialSpec


@dataclass
class SearchConfig:
    """A search's settings; saved as ``config.json``."""

    source: str
    dataset: str = "image_folder"
    architectures: list[str] = field(default_factory=lambda: ["*"])
    augmenters: list[str] = field(default_factory=lambda: ["*"])
    tuner: str = "random"
    executor: str = "local"
    max_trials: int = 10
    epochs: int = 20
    batch_size: int = 32
    patience: int = 5
    val_split: float = 0.2
    image_size: int | None = None
    seed: int = 0
    objective: str = "val_accuracy"
    max_failures: int = 5
    out: str | None = None
    plugins: list[str] = field(default_factory=list)
    export: list[str] = field(default_factory=list)
    """Formats exported (and verified) after the search, beside ``winner/model.keras``."""
    quantize: str | None = None

    def validate(self) -> None:
        for name in ("max_trials", "epochs", "batch_size", "max_failures"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise UsageError(f"patience must be 0 or more, got {self.patience}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise UsageError(f"image size must be between 8 and 1024, got {self.image_size}")
        if self.objective not in OBJECTIVES:
            raise UsageError(
                f"unknown objective {self.objective!r} (choose from {', '.join(OBJECTIVES)})"
            )


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
    leaderboard: list[TrialResult] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def winner_path(self) -> Path:
        return self.run_dir.winner / "model.keras"


def rank(results: list[TrialResult], objective: str) -> list[TrialResult]:
    """Completed trials, best first; ties go to the faster trial."""
    sign = -1 if OBJECTIVES[objective] == "max" else 1
    done = [r for r in results if r.status == COMPLETED]
    return sorted(done, key=lambda r: (sign * r.score(objective), r.train_seconds))


def search(config: SearchConfig, plugins: Plugins | None = None) -> SearchRun:
    """Run a whole search and return it, leaderboard ranked and winner saved."""
    config.validate()
    plugins = plugins or load_plugins(config.plugins)
    loader = plugins["datasets"].get(config.dataset).obj
    architectures = [c.name for c in plugins["architectures"].select(config.architectures)]
    augmenters = [c.name for c in plugins["augmenters"].select(config.augmenters)]
    tuner = plugins["tuners"].get(config.tuner).obj
    executor_factory = plugins["executors"].get(config.executor).obj

    images = loader(config.source, image_size=config.image_size)
    data = split(images, config.val_split, config.seed)
    run_dir = _make_run_dir(config.out)
    run = SearchRun(config, run_dir, plugins, architectures, augmenters, data)
    run.dataset_summary = images.summary() | {
        "train": len(data.y_train),
        "val": len(data.y_val),
        "val_split": config.val_split,
        "seed": config.seed,
    }
    write_json(run_dir.config, asdict(config))
    write_json(run_dir.dataset, run.dataset_summary)
    plugins.hook.search_start(run=run)

    oracle = _make_oracle(tuner, run)
    executor = executor_factory(run)
    failures_in_a_row = 0
    while len(run.results) < config.max_trials:
        trial = oracle.create_trial("main")
        if trial.status != "RUNNING":
            break  # the tuner has nothing more to try
        result = _run_one(run, executor, trial)
        if result.hp_config:  # the space grows by what the candidate declared
            trial.hyperparameters = type(trial.hyperparameters).from_config(result.hp_config)
        if result.status == COMPLETED:
            oracle.update_trial(
                trial.trial_id,
                {
                    "val_accuracy": result.val_accuracy,
                    "val_loss": result.val_loss,
                },
            )
        trial.status = "COMPLETED" if result.status == COMPLETED else "FAILED"
        trial.message = result.error
        oracle.end_trial(trial)
        run.results.append(result)
        run.leaderboard = rank(run.results, config.objective)
        write_json(run_dir.leaderboard, [_leaderboard_row(r) for r in run.leaderboard])
        plugins.hook.trial_end(run=run, result=result)
        failures_in_a_row = failures_in_a_row + 1 if result.status == FAILED else 0
        if failures_in_a_row >= config.max_failures:
            raise UsageError(
                f"{failures_in_a_row} trials failed in a row (last: {result.error}); "
                f"stopping. Tracebacks are in {run_dir.path / 'trials'}"
            )
    _save_winner(run)
    plugins.hook.search_end(run=run, leaderboard=run.leaderboard)
    return run


def _make_run_dir(out: str | None) -> RunDir:
    if out is None:
        return RunDir.new()
    run_dir = RunDir(Path(out))
    if run_dir.config.exists():
        raise UsageError(f"{out!r} already holds a search; choose another --out")
    run_dir.path.mkdir(parents=True, exist_ok=True)
    return run_dir


def _make_oracle(tuner, run: SearchRun):
    import keras_tuner

    config = run.config
    oracle = tuner(
        objective=keras_tuner.Objective(config.objective, OBJECTIVES[config.objective]),
        max_trials=config.max_trials,
        seed=config.seed,
        hyperparameters=initial_space(run.architectures, run.augmenters),
    )
    oracle.verbose = 0  # the rich report owns the terminal
    oracle.max_consecutive_failed_trials = None  # the engine counts failures itself
    oracle._set_project_dir(str(run.run_dir.path), "oracle")
    return oracle


def _run_one(run: SearchRun, executor, trial) -> TrialResult:
    config = run.config
    values = trial.hyperparameters.values
    spec = TrialSpec(
        trial_id=trial.trial_id,
        architecture=values[ARCHITECTURE],
        augmenter=values[AUGMENTER],
        hp_config=trial.hyperparameters.get_config(),
        trial_dir=str(run.run_dir.trial(trial.trial_id)),
        epochs=config.epochs,
        batch_size=config.batch_size,
        patience=config.patience,
        seed=config.seed,
        objective=config.objective,
    )
    run.plugins.hook.trial_start(run=run, spec=spec)

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        run.plugins.hook.trial_epoch_end(run=run, spec=spec, epoch=epoch, logs=logs)

    return executor.run(spec, on_epoch)


def _leaderboard_row(result: TrialResult) -> dict:
    row = asdict(result)
    row.pop("history")
    row.pop("hp_config")
    return row


def _save_winner(run: SearchRun) -> None:
    if not run.leaderboard:
        return
    import keras

    best = run.leaderboard[0]
    model = keras.models.load_model(best.model_path)
    metadata = {
        "trial_id": best.trial_id,
        "architecture": best.architecture,
        "augmenter": best.augmenter,
        "hyperparameters": best.hyperparameters,
        "val_accuracy": best.val_accuracy,
        "classes": run.data.class_names,
        "input_shape": list(run.data.input_shape),
    }
    export = run.plugins["exporters"].get("keras").obj
    run.run_dir.winner.mkdir(parents=True, exist_ok=True)
    export(model, run.run_dir.winner, metadata)
    write_json(run.run_dir.winner / "labels.json", run.data.class_names)
    write_json(run.run_dir.winner / "winner.json", metadata)

    from automl_core.export import publish_search

    publish_search(run)  # model card, and the --export formats verified
