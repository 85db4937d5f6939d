"""A run directory read back for reporting: finished, failed or interrupted alike.

Everything comes from the run's own files, so ``automl report`` can re-render a search
long after it ended, or while it is still running.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from automl_core.errors import UsageError
from automl_core.rundir import RunDir, TrialDir, read_json
from automl_core.training.trial import REFIT, RUNNING, TrialResult, TrialSpec

UNFINISHED = "unfinished"
"""Status of a trial with no result in a search that is no longer going (``running``
while it is)."""

CSV_COLUMNS = (
    "rank",
    "trial_id",
    "status",
    "architecture",
    "augmenter",
    "val_accuracy",
    "balanced_accuracy",
    "macro_f1",
    "val_loss",
    "folds",
    "params",
    "train_seconds",
    "epochs_run",
    "best_epoch",
    "device",
    "error",
    "hyperparameters",
)


@dataclass
class RunReport:
    """What a report shows about one run directory."""

    run_dir: RunDir
    config: dict
    dataset: dict
    state: dict
    trials: list[TrialResult]
    """Every trial that has a directory, in trial-id order; unfinished ones carry no metrics."""
    leaderboard: list[TrialResult]
    card: dict | None = None
    test: dict | None = None
    environment: dict | None = None
    """Its ``environment.json``: what the search ran with (``None``: not recorded)."""
    schema_mismatch: str | None = None
    """Why the run may be shown only in part: written under another run schema."""

    @property
    def objective(self) -> str:
        return self.config.get("objective", "val_accuracy")

    @property
    def status(self) -> str:
        """``finished``, ``interrupted``, ``running`` (or ``unknown`` before any trial ended)."""
        return self.state.get("status", "unknown")

    @property
    def elapsed(self) -> float:
        return float(self.state.get("elapsed_seconds", 0.0))

    @property
    def time_budget(self) -> float | None:
        return self.config.get("time_budget")

    def rows(self) -> list[dict]:
        """One flat record per trial, ranked ones first with their rank."""
        ranks = {r.trial_id: n for n, r in enumerate(self.leaderboard, 1)}
        ordered = self.leaderboard + [t for t in self.trials if t.trial_id not in ranks]
        rows = []
        for trial in ordered:
            row = asdict(trial)
            row.pop("history")
            row.pop("hp_config")
            rows.append({"rank": ranks.get(trial.trial_id)} | row)
        return rows

    def to_json(self) -> str:
        """The whole report as JSON: run facts, every trial, the winner's evaluation."""
        return json.dumps(
            {
                "run_dir": str(self.run_dir.path),
                "status": self.status,
                "elapsed_seconds": self.elapsed,
                "time_budget": self.time_budget,
                "objective": self.objective,
                "dataset": {k: v for k, v in self.dataset.items() if k != "skipped"},
                "trials": self.rows(),
                "winner": self.card,
                "test": self.test,
                "environment": self.environment,
            },
            indent=2,
            default=str,
        )

    def to_csv(self) -> str:
        """One CSV line per trial; hyperparameters as a JSON object in one column."""
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            as_json = {name: json.dumps(row[name]) for name in ("hyperparameters", "folds")}
            writer.writerow(row | as_json)
        return out.getvalue()


def load_report(path: str | Path) -> RunReport:
    """Read a run directory; a folder that is not one, or a run written under another
    run schema that cannot be read, is a usage error."""
    run_dir = RunDir(Path(path))
    config = run_dir.read_config()
    mismatch = run_dir.schema_mismatch()
    try:
        report = _read(run_dir, config)
    except Exception as error:  # a run of this schema that fails to read is a bug: raise
        if mismatch is None:
            raise
        raise UsageError(f"{mismatch}, and cannot read it: {error!r}") from error
    report.schema_mismatch = mismatch
    return report


def _read(run_dir: RunDir, config: dict) -> RunReport:
    from automl_core.engine.run import rank

    state = read_json(run_dir.state) if run_dir.state.is_file() else {}
    folders = [d for d in run_dir.trial_dirs() if d.path.name != REFIT]
    trials = [_trial(d, state) for d in folders]
    trials = [t for t in trials if t is not None]
    card, test = run_dir.winner.card_json, run_dir.winner.test_metrics
    return RunReport(
        run_dir=run_dir,
        config=config,
        dataset=read_json(run_dir.dataset) if run_dir.dataset.is_file() else {},
        state=state,
        trials=trials,
        leaderboard=rank(trials, config.get("objective", "val_accuracy")),
        card=read_json(card) if card.is_file() else None,
        test=read_json(test) if test.is_file() else None,
        environment=read_json(run_dir.environment) if run_dir.environment.is_file() else None,
    )


def _trial(directory: TrialDir, state: dict) -> TrialResult | None:
    """The trial's saved result; a trial that never ended is shown from its spec."""
    if directory.metrics.is_file():
        return TrialResult.load(directory)
    if not directory.spec.is_file():
        return None
    spec = TrialSpec.load(directory)
    status = RUNNING if state.get("status") == RUNNING else UNFINISHED
    result = TrialResult(spec.trial_id, spec.architecture, spec.augmenter, status)
    result.device = spec.device
    return result
