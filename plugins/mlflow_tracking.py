"""The ``mlflow`` tracker: a search as an MLflow run, each trial as a run nested in it.

The store is the one MLflow itself picks: ``MLFLOW_TRACKING_URI``, else MLflow's default
(``sqlite:///mlflow.db`` in the working folder, artifacts in ``./mlruns``); the
experiment is ``MLFLOW_EXPERIMENT_NAME``, else ``automl``. The search's run holds its
settings (params), its dataset folder and run directory (tags), the winner's
``final/<metric>`` values and, as artifacts under ``winner/``, the winner's
``model.keras``, ``labels.json`` and model card. A trial's run holds its hyperparameters
(params), the Keras logs of every epoch (step: the epoch, counting those a continued
trial started from), ``final/<metric>`` values if it completed, and ends ``FINISHED``,
``FAILED`` (with an ``automl.error`` tag) or ``KILLED`` (stopped; ``--resume`` runs it
again). docs/tracking.md says the same, as a table.

The run directory's ``mlflow.json`` names the search's run: a resumed search logs into
it again and adds only the trials it does not hold yet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from automl_core import hookimpl
from automl_core.engine.settings import SETTINGS
from automl_core.errors import UsageError
from automl_core.rundir import read_json, write_json
from automl_core.training.space import ARCHITECTURE, AUGMENTER
from automl_core.training.trial import COMPLETED, FAILED, STOPPED
from automl_plugins.tracking import final_metrics, hyperparameters

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from automl_core.engine.run import SearchRun
    from automl_core.training.trial import TrialResult, TrialSpec

EXPERIMENT = "automl"
"""The experiment when ``MLFLOW_EXPERIMENT_NAME`` is not set."""
PARENT = "mlflow.parentRunId"
"""MLflow's own tag for a nested run."""
TRIAL = "automl.trial_id"
STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", STOPPED: "KILLED"}
ERROR_CHARS = 1000
"""A failed trial's error as a tag, cut to this; the traceback is in its folder."""
MOST_TRIALS = 50_000
"""The most runs MLflow returns from one search: the trials a resume looks for."""


@hookimpl
def register_trackers(register):
    register(
        "mlflow",
        MlflowTracker,
        description="MLflow runs: the search, a nested run per trial, the winner as artifacts",
        needs=("mlflow",),
        install="automl-images[mlflow]",
    )


class MlflowTracker:
    """Logs one search to MLflow, from the search's own process."""

    def __init__(self, run: SearchRun):
        self.state = run.run_dir.mlflow
        self.client: MlflowClient | None = None
        self.experiment = ""
        self.parent: str | None = None
        self.trials: dict[str, str] = {}
        """The MLflow run of each trial running now, by trial id."""

    @hookimpl
    def search_start(self, run: SearchRun) -> None:
        import mlflow

        uri = mlflow.get_tracking_uri()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        try:
            self.client = mlflow.MlflowClient(uri)
            found = self.client.get_experiment_by_name(name)
        except Exception as error:  # a store MLflow cannot open: the URI, a driver missing
            raise UsageError(
                f"mlflow cannot log to {uri}: {error} (set MLFLOW_TRACKING_URI; the default "
                "store needs pip install 'automl-images[mlflow]')"
            ) from None
        self.parent = self.reopen()
        if self.parent is None:
            self.experiment = found.experiment_id if found else self.client.create_experiment(name)
            self.parent = self.start_search(run, uri)
        logged = self.logged_trials()
        for result in run.results:  # ended before this process logged them
            if result.trial_id not in logged:
                self.log_ended(result)

    def reopen(self) -> str | None:
        """The search's run, running again in its experiment, when this store holds it
        (a resume)."""
        from mlflow.exceptions import MlflowException

        if not self.state.exists():
            return None
        run_id = read_json(self.state)["run_id"]
        try:
            self.experiment = self.client.get_run(run_id).info.experiment_id
        except MlflowException:  # another store
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def start_search(self, run: SearchRun, uri: str) -> str:
        """A new run for the search: its settings as params, where its data is as tags."""
        from mlflow.entities import Param

        tags = {
            "automl.source": str(Path(run.config.source).resolve()),
            "automl.run_dir": str(run.run_dir.path.resolve()),
        }
        created = self.client.create_run(self.experiment, run_name=run.run_dir.path.name, tags=tags)
        run_id = created.info.run_id
        summary = run.dataset_summary
        params = {name: getattr(run.config, name) for name in SETTINGS} | {
            "data/classes": len(summary["classes"]),
            "data/train": summary["train"],
            "data/val": summary["val"],
        }
        self.client.log_batch(run_id, params=[Param(k, text(v)) for k, v in params.items()])
        write_json(
            self.state, {"tracking_uri": uri, "experiment_id": self.experiment, "run_id": run_id}
        )
        return run_id

    def logged_trials(self) -> set[str]:
        """The trial ids this search's run holds a nested run for."""
        runs = self.client.search_runs(
            [self.experiment],
            filter_string=f"tags.`{PARENT}` = '{self.parent}'",
            max_results=MOST_TRIALS,
        )
        return {found.data.tags.get(TRIAL) for found in runs}

    def start_trial(self, trial_id: str, architecture: str, augmenter: str, tags: dict) -> str:
        """A nested run for a trial, its architecture and augmenter logged already."""
        from mlflow.entities import Param

        tags = {PARENT: self.parent, TRIAL: trial_id} | tags
        created = self.client.create_run(
            self.experiment, run_name=f"{trial_id} {architecture}", tags=tags
        )
        run_id = created.info.run_id
        params = [Param(ARCHITECTURE, architecture), Param(AUGMENTER, augmenter)]
        self.client.log_batch(run_id, params=params)
        return run_id

    def end_trial(self, run_id: str, result: TrialResult) -> None:
        """Its hyperparameters, final metrics, error and status: the trial ended."""
        from mlflow.entities import Param

        params = [Param(k, text(v)) for k, v in hyperparameters(result).items()]
        self.client.log_batch(
            run_id, metrics=metrics(final_metrics(result), result.epochs_run), params=params
        )
        if result.error:
            self.client.set_tag(run_id, "automl.error", result.error[:ERROR_CHARS])
        end = int(result.ended_at * 1000) or None
        self.client.set_terminated(run_id, STATUS.get(result.status, "FAILED"), end)

    def log_ended(self, result: TrialResult) -> None:
        """A trial that ended unseen, from its saved result and history."""
        run_id = self.start_trial(
            result.trial_id, result.architecture, result.augmenter, {"automl.stage": result.stage}
        )
        history = result.history
        for index in range(len(history.get("loss", []))):
            logs = {key: values[index] for key, values in history.items() if index < len(values)}
            self.client.log_batch(run_id, metrics=metrics(logs, result.initial_epoch + index + 1))
        self.end_trial(run_id, result)

    @hookimpl
    def trial_start(self, run: SearchRun, spec: TrialSpec) -> None:
        tags = {"automl.stage": spec.stage}
        if spec.warm_start:
            tags["automl.continues"] = Path(spec.warm_start).parent.name
        self.trials[spec.trial_id] = self.start_trial(
            spec.trial_id, spec.architecture, spec.augmenter, tags
        )

    @hookimpl
    def trial_epoch_end(
        self, run: SearchRun, spec: TrialSpec, epoch: int, logs: dict[str, float]
    ) -> None:
        if spec.trial_id in self.trials:
            self.client.log_batch(self.trials[spec.trial_id], metrics=metrics(logs, epoch))

    @hookimpl
    def trial_end(self, run: SearchRun, result: TrialResult) -> None:
        if result.trial_id in self.trials:
            self.end_trial(self.trials.pop(result.trial_id), result)

    @hookimpl
    def search_end(self, run: SearchRun, leaderboard: list[TrialResult]) -> None:
        winner = run.run_dir.winner
        values = final_metrics(leaderboard[0]) if leaderboard else {}
        if leaderboard:
            self.client.set_tag(self.parent, "automl.winner", leaderboard[0].trial_id)
        if winner.test_metrics.exists():
            accuracy = read_json(winner.test_metrics).get("accuracy")
            values |= {} if accuracy is None else {"test/accuracy": accuracy}
        self.client.log_batch(self.parent, metrics=metrics(values, 0))
        for path in (winner.model, winner.labels, winner.card_md, winner.card_json):
            if path.exists():
                self.client.log_artifact(self.parent, str(path), "winner")
        self.client.set_terminated(self.parent, "KILLED" if run.interrupted else "FINISHED")
        self.parent = None

    def close(self) -> None:
        """The search stopped by an error: its runs still open end ``FAILED``."""
        for run_id in [*self.trials.values(), self.parent]:
            if run_id is not None:
                self.client.set_terminated(run_id, "FAILED")
        self.trials.clear()
        self.parent = None


def metrics(values: dict[str, float], step: int) -> list:
    """MLflow metrics at ``step``, stamped now."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, step) for key, value in values.items()]


def text(value: object) -> str:
    """A param's value: lists comma-separated, like the command line spells them."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
