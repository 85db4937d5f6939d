"""The one module that touches keras-tuner oracles, private methods included.

The engine drives an oracle directly (keras-tuner's ``Tuner`` is not used): it asks it for
trials, may replace a trial's values with its own choice (a warm-start default, a rung's
candidate, a continuation), tells it results, and keeps its files in the run directory,
written atomically (keras-tuner writes them in place).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl_core.rundir import RunDir, write_json
from automl_core.training.space import from_config, initial_space


class Oracle:
    """A keras-tuner oracle as the search loop uses it."""

    def __init__(self, oracle):
        self.oracle = oracle
        oracle.verbose = 0  # the rich report owns the terminal
        oracle.max_consecutive_failed_trials = None  # the engine counts failures itself
        # keras-tuner's own writers write in place: a kill mid-write would leave a run
        # that cannot be resumed
        oracle.save = self.save
        oracle._save_trial = self._save_trial
        self._workers = 0

    @classmethod
    def create(
        cls,
        factory,
        *,
        objective: str,
        direction: str,
        max_trials: int | None,
        max_epochs: int,
        seed: int,
        architectures: list[str],
        augmenters: list[str],
        run_dir: RunDir,
    ) -> Oracle:
        """A new oracle from a tuner plugin's ``factory``, its files in ``run_dir``."""
        import keras_tuner

        oracle = factory(
            objective=keras_tuner.Objective(objective, direction),
            max_trials=max_trials,
            max_epochs=max_epochs,
            seed=seed + 1,  # keras-tuner oracles take 0 to mean "pick a random seed"
            hyperparameters=initial_space(architectures, augmenters),
        )
        oracle._set_project_dir(str(run_dir.oracle.parent), run_dir.oracle.name)
        return cls(oracle)

    def reload(self, max_trials: int | None) -> list[Any]:
        """Read the oracle's files back; returns the trials that had not ended, in the
        order they started, which are the caller's to finish or run again.

        Every trial not in the end order counts, not only those ``oracle.json`` lists as
        running: a kill between a trial's ``trial.json`` and ``oracle.json`` leaves it
        in neither list. keras-tuner's own retry queue is emptied.
        """
        if Path(self.oracle._get_oracle_fname()).exists():  # else killed before any trial
            self.oracle.reload()
        self.oracle.max_trials = max_trials
        ended = set(self.oracle.end_order)
        pending = [t for i, t in self.oracle.trials.items() if i not in ended]
        self.oracle._retry_queue.clear()
        started = {trial_id: n for n, trial_id in enumerate(self.oracle.start_order)}
        return sorted(pending, key=lambda trial: started.get(trial.trial_id, len(started)))

    @property
    def end_order(self) -> list[str]:
        return list(self.oracle.end_order)

    @property
    def trials(self) -> dict[str, Any]:
        return self.oracle.trials

    def values(self, trial_id: str) -> dict[str, Any]:
        return self.oracle.trials[trial_id].hyperparameters.values

    def new_trial(self):
        """The tuner's next trial, registered as running; ``None`` when it has none now
        (its space may still grow while trials run, or it is done)."""
        self._workers += 1
        trial = self.oracle.create_trial(f"slot-{self._workers}")
        return trial if trial.status == "RUNNING" else None

    def resume_trial(self, trial) -> None:
        """Run ``trial`` (left running by an interrupted search) again."""
        self._workers += 1
        trial.status = "RUNNING"
        self.oracle.ongoing_trials[f"slot-{self._workers}"] = trial

    def choose(self, trial, values: dict[str, Any]) -> None:
        """Run ``trial`` with ``values`` instead of the tuner's choice; every other value
        its candidate uses at its default (keras-tuner would draw them at random)."""
        hyperparameters = trial.hyperparameters
        hyperparameters.values = dict(values)
        for hp in hyperparameters.space:  # parents come first: their values decide
            if hyperparameters.is_active(hp) and hp.name not in hyperparameters.values:
                hyperparameters.values[hp.name] = hp.default
        self.oracle._record_values(trial)  # as create_trial does, for the values it runs
        self._save_trial(trial)
        self.save()

    def grow(self, hp_config: dict) -> None:
        """A candidate declared its hyperparameters: the tuner may now sample them."""
        self.oracle.update_space(from_config(hp_config))

    def finish(self, trial, *, completed: bool, metrics: dict[str, float], hp_config, error):
        """Record an ended trial; a completed one's ``metrics`` feed the tuner."""
        if hp_config:  # the space grows by what the candidate declared
            trial.hyperparameters = from_config(hp_config)
        if completed:
            self.oracle.update_trial(trial.trial_id, metrics)
        trial.status = "COMPLETED" if completed else "FAILED"
        trial.message = error
        self.oracle.end_trial(trial)

    def save(self) -> None:
        write_json(self.oracle._get_oracle_fname(), self.oracle.get_state())

    def _save_trial(self, trial) -> None:
        directory = self.oracle._get_trial_dir(trial.trial_id)
        write_json(f"{directory}/trial.json", trial.get_state())
