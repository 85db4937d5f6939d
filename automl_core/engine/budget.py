"""Time budgets: how long a trial will take, estimated.

Estimates come from the trials this search already ran: a trial costs a fixed start-up
(process, data, build, evaluation, saving) plus its epochs at the pace its architecture
showed. A running trial plans its own epochs from its measured pace (``trial.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from automl_core.training.trial import COMPLETED, TrialResult


class Pace:
    """Seconds per epoch by architecture and the fixed cost of a trial, as measured."""

    def __init__(self, results: Iterable[TrialResult] = ()):
        self.epoch_seconds: dict[str, float] = {}
        self.overheads: list[float] = []
        for result in results:
            self.learn(result)

    def learn(self, result: TrialResult) -> None:
        trained = result.epochs_run - result.initial_epoch
        if result.status != COMPLETED or trained < 1:
            return
        per_epoch = result.train_seconds / trained
        known = self.epoch_seconds.get(result.architecture)
        self.epoch_seconds[result.architecture] = min(per_epoch, known or per_epoch)
        self.overheads.append(max(0.0, result.ended_at - result.started_at - result.train_seconds))

    def epoch_estimate(self, architecture: str, costs: dict[str, float]) -> float | None:
        """Seconds per epoch of ``architecture``: as measured, else its ``cost`` (relative
        training time, from its registration) times the least seconds per unit of cost
        measured so far; ``None`` when there is nothing to go on."""
        if architecture in self.epoch_seconds:
            return self.epoch_seconds[architecture]
        per_unit = [s / costs[a] for a, s in self.epoch_seconds.items() if a in costs]
        if architecture not in costs or not per_unit:
            return None
        return min(per_unit) * costs[architecture]

    @property
    def overhead(self) -> float:
        return min(self.overheads, default=0.0)

    def shortest_trial(self) -> float:
        """The least a new trial can cost: start-up plus one epoch of the fastest candidate."""
        return self.overhead + min(self.epoch_seconds.values(), default=0.0)
