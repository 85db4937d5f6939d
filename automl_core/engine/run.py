"""A search's settings (``SearchConfig``) and its state as it runs (``SearchRun``), with
the ranking and the files that record it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automl_core.data.dataset import DatasetSplit
from automl_core.errors import UsageError
from automl_core.plugin.manager import Plugins
from automl_core.rundir import RunDir, write_json
from automl_core.training.trial import COMPLETED, OBJECTIVES, TrialResult

PRECISIONS = ("auto", "float32", "mixed")
"""``--precision``: see ``automl_core.training.precision.training_policy``."""


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
    val_split: float | None = None
    """Share of each class held out; default ``data.DEFAULT_VAL_SPLIT``, capped."""
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
    precision: str = "auto"
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
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
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
    """Every trial that ended (completed or failed), in the order they ended."""
    leaderboard: list[TrialResult] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    spent_before: float = 0.0
    """Seconds this search ran before it was resumed."""
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    """What the scheduling policy left out and why (a candidate too slow for its time)."""

    @property
    def winner_path(self) -> Path:
        return self.run_dir.winner.model

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


def save_state(run: SearchRun, status: str) -> None:
    budget, elapsed = run.config.time_budget, run.elapsed
    state = {
        "status": status,
        "elapsed_seconds": elapsed,
        "time_budget": budget,
        "overshoot_seconds": None if budget is None else max(0.0, elapsed - budget),
        "notes": run.notes,
        "updated_at": time.time(),
    }
    write_json(run.run_dir.state, state)


def leaderboard_row(result: TrialResult) -> dict:
    row = asdict(result)
    row.pop("history")
    row.pop("hp_config")
    return row
