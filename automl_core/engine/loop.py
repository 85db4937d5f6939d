"""The loop that keeps every executor slot busy, and the winner's refit after it."""

from __future__ import annotations

import signal
import sys
import threading
import time

from automl_core.engine.budget import Pace
from automl_core.engine.run import SearchRun, auto_batch_size, leaderboard_row, rank, save_state
from automl_core.errors import UsageError
from automl_core.rundir import read_json, write_json
from automl_core.training.space import ARCHITECTURE, AUGMENTER, from_config
from automl_core.training.trial import (
    COMPLETED,
    FAILED,
    REFIT,
    RUNNING,
    STOPPED,
    TrialResult,
    TrialSpec,
)

POLL_SECONDS = 1.0
FIRST_TRIAL_SHARE = 0.1
"""With a time budget, the first warm-start trial (the cheapest architecture) plans its
epochs to end within this share of it: a sensible model early, the rest for stronger ones."""
DEFAULT_NEEDS_EPOCHS = 0.5
"""With a time budget, a warm-start default starts only if this share of ``--epochs`` of it
fits in the time left (estimated): cut shorter, a new candidate rarely catches up."""
CONTINUE_AT_LEAST = 5
"""Epochs that must fit in the time left for the best trial to be continued once more."""


class SearchLoop:
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
        self.portfolio = portfolio(run, oracle)
        self.costs = {
            c.name: c.info["cost"]
            for c in run.plugins["architectures"].components.values()
            if c.info.get("cost")
        }
        # once a default is skipped for time, the best trial is continued instead
        self.continuing = False
        # trials that were running when the search stopped: run them again first
        self.rerun = list(oracle.ongoing_trials.values())
        oracle.ongoing_trials.clear()

    def go(self) -> None:
        for trial in list(self.rerun):  # finished but not recorded before a crash
            saved = self.run.run_dir.trial(trial.trial_id).metrics
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
            chosen = self._next_trial()
            if chosen is None:
                return True
            trial, seconds = chosen
            spec = self._spec(trial, seconds)
            self.running[trial.trial_id] = trial
            self.unbuilt.add(trial.trial_id)
            self.run.plugins.hook.trial_start(run=self.run, spec=spec)
            self.executor.submit(spec)
        return False

    def _next_trial(self) -> tuple[object, float | None] | None:
        """The keras-tuner trial to start next, with its share of the time budget; ``None``
        when none should start now. In order: a trial to run again, a warm-start default
        that fits, the best trial continued (once a default did not fit), the tuner's pick."""
        if self.rerun:
            trial = self.rerun.pop(0)
            self.oracle.ongoing_trials[self._tuner_id()] = trial
            return trial, None
        default, leader = self._next_default(), None
        if default is None and self.continuing and self.run.leaderboard:
            leader = self._leader_to_continue()
            if leader is None and self.running:
                return None  # what the running trials give decides what comes next
        trial = self.oracle.create_trial(self._tuner_id())
        if trial.status != "RUNNING":  # with trials still running the space may grow
            if default is not None:
                self.portfolio.insert(0, default)
            return None
        if default is not None:
            self._make_default(trial, *default)
            if self.deadline is not None and not self.run.results and not self.running:
                return trial, FIRST_TRIAL_SHARE * self.run.config.time_budget
        elif leader is not None:
            self._make_continuation(trial, leader)
        return trial, None

    def _next_default(self) -> tuple[str, str] | None:
        """The next warm-start default that fits in the time left; those that do not are
        dropped, and the search turns to continuing its best trial."""
        while self.portfolio:
            architecture, augmenter = self.portfolio.pop(0)
            per_epoch = self.pace.epoch_estimate(architecture, self.costs)
            needed = DEFAULT_NEEDS_EPOCHS * self.run.config.epochs * (per_epoch or 0.0)
            if self.pace.overhead + needed <= self.remaining():
                return architecture, augmenter
            self.continuing = True
        return None

    def _leader_to_continue(self) -> TrialResult | None:
        """The best trial, if no trial continues it yet (with the same seed another
        would only repeat that one) and a few more epochs of it fit in the time left."""
        leader = self.run.leaderboard[0]
        per_epoch = self.pace.epoch_seconds.get(leader.architecture, 0.0)
        if self.pace.overhead + CONTINUE_AT_LEAST * per_epoch > self.remaining():
            return None
        for trial in self.oracle.trials.values():  # running ones included
            if trial.hyperparameters.values.get("tuner/trial_id") == leader.trial_id:
                return None
        return leader

    def _make_default(self, trial, architecture: str, augmenter: str) -> None:
        """Warm start: this trial trains ``architecture`` at its defaults instead."""
        values = trial.hyperparameters.values
        tuner_values = {k: v for k, v in values.items() if k.startswith("tuner/")}
        self._record(trial, tuner_values | {ARCHITECTURE: architecture, AUGMENTER: augmenter})

    def _make_continuation(self, trial, leader: TrialResult) -> None:
        """This trial continues ``leader``: the same candidate from its weights, with a new
        learning-rate cycle of up to ``--epochs`` more epochs (a warm restart)."""
        values = self.oracle.trials[leader.trial_id].hyperparameters.values
        own = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        self._record(
            trial,
            own
            | {
                "tuner/trial_id": leader.trial_id,
                "tuner/initial_epoch": leader.epochs_run,
                "tuner/epochs": leader.epochs_run + self.run.config.epochs,
            },
        )

    def _record(self, trial, values: dict) -> None:
        """Run ``trial`` with ``values`` instead of the tuner's choice."""
        trial.hyperparameters.values = values
        self.oracle._record_values(trial)  # as create_trial does, for the values it runs
        self.oracle._save_trial(trial)
        self.oracle.save()

    def _tuner_id(self) -> str:
        self.tuner_ids += 1
        return f"slot-{self.tuner_ids}"

    def _spec(self, trial, seconds: float | None = None) -> TrialSpec:
        """The trial to run; with a time budget it plans its epochs to end by the
        deadline, or within ``seconds`` of its start."""
        config = self.run.config
        values = trial.hyperparameters.values
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        promoted = values.get("tuner/trial_id")
        epochs = int(values.get("tuner/epochs", config.epochs))
        return TrialSpec(
            trial_id=trial.trial_id,
            architecture=values[ARCHITECTURE],
            augmenter=values[AUGMENTER],
            hp_config=trial.hyperparameters.get_config(),
            trial_dir=str(self.run.run_dir.trial(trial.trial_id)),
            epochs=epochs,
            batch_size=config.batch_size or auto_batch_size(len(self.run.data.y_train)),
            # a trial trained further restarts its learning rate high: its score dips
            # before it climbs, so it trains its whole new cycle (keeping its best epoch)
            patience=epochs if promoted else config.patience,
            seed=config.seed,
            objective=config.objective,
            deadline=self.deadline,
            seconds=seconds,
            initial_epoch=initial_epoch if promoted else 0,
            warm_start=str(self.run.run_dir.trial(promoted).model) if promoted else None,
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
        write_json(run.run_dir.leaderboard, [leaderboard_row(r) for r in run.leaderboard])
        save_state(run, RUNNING)
        run.plugins.hook.trial_end(run=run, result=result)
        self.failures_in_a_row = self.failures_in_a_row + 1 if result.status == FAILED else 0
        if self.failures_in_a_row >= run.config.max_failures:
            raise UsageError(
                f"{self.failures_in_a_row} trials failed in a row (last: {result.error}); "
                f"stopping. Tracebacks and logs are in {run.run_dir.trials}"
            )


class graceful_interrupt:
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


def portfolio(run: SearchRun, oracle) -> list[tuple[str, str]]:
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
