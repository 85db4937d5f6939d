"""The loop that keeps every executor slot busy, and the winner's refit after it.

What to run next is the scheduling policy's decision (``engine.policy``); this loop turns
its answers into oracle trials and executor submissions, and the results back into the
policy's measurements, the leaderboard and the run directory.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import replace

from automl_core.engine.oracle import Oracle
from automl_core.engine.pace import Candidate, Outcome, Pace
from automl_core.engine.policy import PLAIN, Policy, Run
from automl_core.engine.portfolio import (
    from_scratch_on_small_data,
    offered_image_sizes,
    portfolio,
    sizes,
)
from automl_core.engine.run import SearchRun, auto_batch_size, leaderboard_row, rank, save_state
from automl_core.errors import UsageError
from automl_core.rundir import read_json, write_json
from automl_core.training import input_size
from automl_core.training.space import ARCHITECTURE, AUGMENTER
from automl_core.training.trial import (
    COMPLETED,
    FAILED,
    OBJECTIVES,
    REFIT,
    RUNNING,
    STOPPED,
    TrialResult,
    TrialSpec,
)

POLL_SECONDS = 1.0
FINISH_SHARE, FINISH_SECONDS = 0.02, 10.0
"""Kept free at the end of a time budget for saving, scoring and exporting the winner
and writing the report: 2% of the budget, at most 10 s. Trials end by the deadline
before it."""
TUNER_KEY = "tuner/"
"""keras-tuner's own bookkeeping values in a trial's hyperparameters."""


class SearchLoop:
    """Keeps every executor slot busy until the policy, the trial count or the time
    budget is done, or the user stops it."""

    def __init__(self, run: SearchRun, oracle: Oracle, executor, pending: list | None = None):
        self.run, self.oracle, self.executor = run, oracle, executor
        self.running: dict[str, tuple[object, Run, float]] = {}  # id -> trial, run, start
        # Running trials whose candidates have not declared their hyperparameters yet.
        # No new trial is drawn until they have: the space is then complete, so the
        # same seed gives the same candidates however many trials run at once.
        self.unbuilt: set[str] = set()
        self.failures_in_a_row = 0
        config = run.config
        budget = config.time_budget
        self.deadline = None
        if budget is not None:
            reserve = min(FINISH_SHARE * budget, FINISH_SECONDS)
            self.deadline = run.started_at + budget - run.spent_before - reserve
        registry = run.plugins["architectures"]
        self.image_sizes = input_size.offered_sizes(
            run.data.input_shape[0], fixed=config.image_size is not None
        )
        costs = {c.name: c.info["cost"] for c in registry.components.values() if c.info.get("cost")}
        warm, random_init = from_scratch_on_small_data(run, portfolio(run, oracle, costs))
        self.policy = Policy(
            warm,
            train_images=len(run.data.y_train),
            epochs=config.epochs,
            budget=None if budget is None else self.remaining(),
            pace=Pace(costs),
            sizes=sizes(registry, self.image_sizes),
            folds=run.data.fold_count,
            max_trials=config.max_trials,
            notes=[f"{c.architecture}: not screened (no pretrained weights)" for c in random_init],
        )
        for result in run.results:  # a resumed search knows its earlier trials' paces
            self.policy.learn(self._outcome(result, None, result.ended_at - result.started_at))
        self.rerun = list(pending or [])  # trials that were running when the search stopped

    def go(self) -> None:
        for trial in list(self.rerun):  # finished but not recorded before a crash
            saved = self.run.run_dir.trial(trial.trial_id).metrics
            if saved.exists() and read_json(saved)["status"] in (COMPLETED, FAILED):
                self.rerun.remove(trial)
                self.oracle.resume_trial(trial)
                self._finish(trial, self._run_of(trial), TrialResult.load(saved.parent), 0.0)
        while True:
            exhausted = self._fill_slots()
            if not self.running and (exhausted or self.run.interrupted):
                return
            for result in self.executor.wait(self, POLL_SECONDS):
                self.unbuilt.discard(result.trial_id)
                trial, run, submitted = self.running.pop(result.trial_id)
                self._finish(trial, run, result, time.time() - submitted)

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.time()

    def _fill_slots(self) -> bool:
        """Start trials on free slots; True when there is nothing to start now."""
        while not self.run.interrupted and self.executor.free_slots() > 0:
            if self.unbuilt:
                return False
            if len(self.run.results) + len(self.running) >= (self.run.config.max_trials or 1e9):
                return True
            if self.rerun:
                trial = self.rerun.pop(0)
                self.oracle.resume_trial(trial)
                self._submit(trial, self._run_of(trial))
                continue
            run = self.policy.next(self.remaining(), running=len(self.running))
            if run is None:
                return True
            trial = self.oracle.new_trial()
            if trial is None:  # the tuner has none now: its space may grow, or it is done
                if run.candidate is None and run.stage != PLAIN:
                    continue  # a screening slot for a tuner pick: screen without it
                self.policy.retry(run)
                return True
            self._choose(trial, run)
            if run.candidate is None:  # the tuner's pick must fit in its time too
                run = replace(run, candidate=self._candidate(trial.hyperparameters.values))
                if not self.policy.fits(run, self.remaining()):
                    reason = "skipped: " + self.policy.notes[-1]
                    self.oracle.finish(
                        trial, completed=False, metrics={}, hp_config={}, error=reason
                    )
                    continue
            self._submit(trial, run)
        return False

    def _choose(self, trial, run: Run) -> None:
        """Run ``trial`` with ``run``'s candidate (the tuner's own pick when it has none)."""
        if run.candidate is None:
            return
        values = trial.hyperparameters.values
        chosen = {k: v for k, v in values.items() if k.startswith(TUNER_KEY)}
        chosen |= {ARCHITECTURE: run.candidate.architecture, AUGMENTER: run.candidate.augmenter}
        chosen |= dict(run.candidate.values)
        if run.continue_from is not None:
            parent = self.run.run_dir.trial(run.continue_from)
            epochs = TrialResult.load(parent).epochs_run
            chosen |= {
                "tuner/trial_id": run.continue_from,
                "tuner/initial_epoch": epochs,
                "tuner/epochs": epochs + run.epochs,
            }
        self.oracle.choose(trial, chosen)

    def _submit(self, trial, run: Run) -> None:
        spec = self._spec(trial, run)
        self.running[trial.trial_id] = (trial, run, time.time())
        self.unbuilt.add(trial.trial_id)
        self.run.plugins.hook.trial_start(run=self.run, spec=spec)
        self.executor.submit(spec)

    def _spec(self, trial, run: Run) -> TrialSpec:
        """The trial to run: with a time budget it plans its epochs to end by the deadline,
        or within its share of the budget."""
        config = self.run.config
        values = trial.hyperparameters.values
        promoted = values.get("tuner/trial_id")
        initial_epoch = int(values.get("tuner/initial_epoch", 0)) if promoted else 0
        epochs = int(values.get("tuner/epochs", initial_epoch + run.epochs))
        return TrialSpec(
            trial_id=trial.trial_id,
            architecture=values[ARCHITECTURE],
            augmenter=values[AUGMENTER],
            hp_config=trial.hyperparameters.get_config(),
            trial_dir=str(self.run.run_dir.trial(trial.trial_id)),
            epochs=epochs,
            batch_size=config.batch_size or auto_batch_size(len(self.run.data.y_train)),
            # a planned run trains its whole learning-rate cycle (keeping its best epoch);
            # a trained-further one restarts its learning rate high, and its score dips
            # before it climbs
            patience=config.patience if run.stage == PLAIN and not promoted else epochs,
            seed=config.seed,
            objective=config.objective,
            deadline=self.deadline,
            seconds=run.seconds,
            initial_epoch=initial_epoch,
            warm_start=str(self.run.run_dir.trial(promoted).model) if promoted else None,
            train_images=run.train_images,
            stage=run.stage,
            image_sizes=self._image_sizes(values[ARCHITECTURE]),
            class_weights=self.run.class_weights,
            fold=run.fold,
            fold_of=run.fold_of,
            final_of=run.final_of,
        )

    def _image_sizes(self, architecture: str) -> list[int] | None:
        component = self.run.plugins["architectures"].get(architecture)
        return offered_image_sizes(component, self.image_sizes)

    def _run_of(self, trial) -> Run:
        """The policy's run that ``trial`` (started before a crash) stands for: as its
        saved spec planned it (epochs, images, share of the budget), if it got that far."""
        candidate = self._candidate(trial.hyperparameters.values)
        folder = self.run.run_dir.trial(trial.trial_id)
        if not folder.spec.exists():
            return Run(candidate, PLAIN, self.run.config.epochs)
        spec = TrialSpec.load(folder)
        epochs = spec.epochs - spec.initial_epoch
        return Run(
            candidate,
            spec.stage or PLAIN,
            epochs,
            spec.seconds,
            spec.train_images,
            fold=spec.fold,
            fold_of=spec.fold_of,
            final_of=spec.final_of,
        )

    def _candidate(self, values: dict) -> Candidate:
        """The candidate a trial with ``values`` trained: every value fixed."""
        own = tuple(sorted((k, v) for k, v in values.items() if not k.startswith(TUNER_KEY)))
        architecture = values[ARCHITECTURE]
        return Candidate(
            architecture, values[AUGMENTER], own, self.policy.pace.costs.get(architecture)
        )

    def _trained(self, result: TrialResult) -> Candidate:
        """The candidate ``result`` trained."""
        values = {ARCHITECTURE: result.architecture, AUGMENTER: result.augmenter}
        return self._candidate(result.hyperparameters | values)

    def _outcome(self, result: TrialResult, run: Run | None, wall: float) -> Outcome:
        """What the policy learns from ``result``: its score, and its pace measured
        apart from its fixed cost."""
        trained = result.epochs_run - result.initial_epoch
        steps = math.ceil(result.train_images / result.batch_size) if result.batch_size else 0
        per_epoch = steps * (result.step_seconds or 0.0) + (result.val_seconds or 0.0)
        completed = result.status == COMPLETED
        score = result.score(self.run.config.objective) if completed else None
        sign = 1 if OBJECTIVES[self.run.config.objective] == "max" else -1
        candidate = run.candidate if run is not None and run.candidate is not None else None
        return Outcome(
            result.trial_id,
            candidate or self._trained(result),
            run.stage if run is not None else (result.stage or PLAIN),
            completed=completed,
            score=-math.inf if score is None else sign * score,
            val_accuracy=result.val_accuracy,
            wall_seconds=wall,
            # a trial cut by its time mid-epoch trained less than its epochs' worth
            train_seconds=min(trained * per_epoch, result.train_seconds),
            seconds_per_image=(
                result.step_seconds / result.batch_size
                if result.step_seconds and result.batch_size
                else None
            ),
            val_seconds=result.val_seconds or 0.0,
            epochs_trained=trained,
            epochs_planned=(run.epochs if run is not None else trained),
            images_seen=trained * result.train_images,
            fold_of=result.fold_of,
            final_of=result.final_of,
        )

    def refit(self) -> TrialResult | None:
        """Train the winner again on train+validation for its best epoch count, if wanted
        and if the time left allows; ``None`` when not done."""
        run, best = self.run, self.run.leaderboard[0]
        epochs = best.best_epoch or best.epochs_run
        data = run.data
        images = len(data.y_train) + len(data.y_val)
        per_epoch = self.policy.epoch_seconds(self._trained(best), images) or 0.0
        needed = self.policy.pace.fixed_seconds(best.architecture) + epochs * per_epoch
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
            stage=REFIT,
            image_sizes=self._image_sizes(best.architecture),
            class_weights=run.class_weights,
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
            self.oracle.grow(hp_config)
            self.unbuilt.discard(spec.trial_id)

    def trial_epoch(self, spec: TrialSpec, epoch: int, logs: dict[str, float]) -> None:
        self.run.plugins.hook.trial_epoch_end(run=self.run, spec=spec, epoch=epoch, logs=logs)

    def _finish(self, trial, planned: Run, result: TrialResult, wall: float) -> None:
        run = self.run
        if result.status == STOPPED:  # interrupted by the user: stays open for --resume
            run.plugins.hook.trial_end(run=run, result=result)
            return
        metrics = {name: result.score(name) for name in OBJECTIVES}
        self.oracle.finish(
            trial,
            completed=result.status == COMPLETED,
            metrics=metrics,
            hp_config=result.hp_config,
            error=result.error,
        )
        run.results.append(result)
        self.policy.learn(self._outcome(result, planned, wall))
        run.notes = list(self.policy.notes)
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
