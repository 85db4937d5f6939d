"""A search's state as it runs (``SearchRun``), with the ranking and the files that record
it. Its settings are ``automl_core.engine.settings.SearchConfig``."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automl_core.data.dataset import DatasetSplit
from automl_core.engine.settings import SearchConfig
from automl_core.engine.spread import Scores, fold_scores, pooled_spread, rank_within_noise
from automl_core.plugin.manager import Plugins
from automl_core.rundir import RunDir, write_json
from automl_core.training.trial import COMPLETED, OBJECTIVES, TrialResult


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
    def class_weights(self) -> dict[str, float] | None:
        """The weights its trials give each class, as decided when it started (recorded
        in ``dataset.json``; a run from before class weights has none)."""
        return self.dataset_summary.get("class_weights")

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


SCREENING = ("screen", "second")
"""The policy's screening stages (``engine.policy.SCREEN``, ``SECOND``; the policy sits
above this module)."""


def rank(results: list[TrialResult], objective: str) -> list[TrialResult]:
    """Completed trials, best first; ties (within the noise, where candidates were
    validated on several folds) go to the cheaper model (seconds per training image). A
    trial on another fold is not ranked itself: its score joins its candidate's
    (``TrialResult.folds``, filled in). Once some were measured on several folds, the
    final runs (the candidate those folds chose, at its final size) rank first by their
    one score on fold 0, then the candidates by fold mean, then the rest: screens measured
    on one fold only, and finals below their own candidate's screen on fold 0 by more than
    the noise. On 40 validation images one score is mostly luck: it must not hand the win
    back to a screen of the final's own candidate, but a final that clearly lost to it
    (a size its weights do not suit) does not win."""
    sign = 1 if OBJECTIVES[objective] == "max" else -1
    done = [r for r in results if r.status == COMPLETED]
    scores = fold_scores(
        done, lambda r: sign * r.score(objective), lambda r: r.trial_id, lambda r: r.fold_of
    )
    ranked = [r for r in done if not r.fold_of]
    for result in ranked:
        own = scores[result.trial_id].values  # recorded in the objective's own terms
        result.folds = Scores(tuple(sign * v for v in own)).summary() if len(own) > 1 else None
    if not any(r.folds for r in ranked):
        return rank_within_noise(ranked, lambda r: scores[r.trial_id], _cost)
    difference = math.sqrt(2) * pooled_spread([scores[r.trial_id] for r in ranked])

    def holds(final: TrialResult) -> bool:
        screen = scores.get(final.final_of or "")
        return screen is None or scores[final.trial_id].mean >= screen.values[0] - difference

    finals = [r for r in ranked if r.stage not in SCREENING and holds(r)]
    measured = [r for r in ranked if r.stage in SCREENING and r.folds]
    rest = [r for r in ranked if r not in finals and r not in measured]
    return [
        result
        for group in (finals, measured, rest)
        for result in rank_within_noise(group, lambda r: scores[r.trial_id], _cost)
    ]


def _cost(result: TrialResult) -> tuple[float, float]:
    """What a model costs to run: its measured seconds per image, then its training time."""
    per_image = result.step_seconds / result.batch_size if result.step_seconds else math.inf
    return per_image, result.train_seconds


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
