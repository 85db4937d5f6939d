"""What a candidate is and what its trials measured: the pace model the policy plans with.

Pure, like the policy: a trial's ``Outcome`` (its score and timings), the ``Pace`` learnt
from outcomes (steady seconds per image apart from each trial's fixed cost, with the
registered ``cost=`` ratios as the prior before a measurement) and an architecture's
``Sizes`` (what a larger size costs relative to its default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_FIXED_SECONDS = 8.0
"""A trial's fixed cost before any was measured (process start and TensorFlow import
dominate on a CPU)."""


@dataclass(frozen=True)
class Candidate:
    """What a trial trains: an architecture, an augmenter and fixed hyperparameter values
    (empty for its defaults). ``cost`` is the architecture's registered relative training
    time, the prior used before its pace is measured; ``guide``, see below."""

    architecture: str
    augmenter: str
    values: tuple[tuple[str, Any], ...] = ()
    cost: float | None = None
    guide: str | None = None
    """The architecture whose screening score says whether this one is worth screening
    (a pretrained backbone's embedding candidate, ``guides=`` in its registration)."""

    @property
    def key(self) -> tuple:
        return (self.architecture, self.augmenter, self.values)


@dataclass(frozen=True)
class Outcome:
    """What the policy learns from an ended trial."""

    trial_id: str
    candidate: Candidate
    stage: str
    completed: bool
    score: float = -math.inf
    """The objective, higher is better (the loop negates a loss)."""
    val_accuracy: float | None = None
    wall_seconds: float = 0.0
    """From the trial's submission to its result: process start and data included."""
    train_seconds: float = 0.0
    """Steady training time of the epochs it trained (compile excluded)."""
    seconds_per_image: float | None = None
    """Steady training seconds per image and epoch."""
    val_seconds: float = 0.0
    """Seconds of one validation pass (each epoch ends with one)."""
    epochs_trained: int = 0
    epochs_planned: int = 0
    """The epoch limit it was given: trained fewer, it stopped for time or patience."""
    images_seen: int = 0
    """Training images over all its epochs."""
    fold_of: str | None = None
    """The trial whose candidate this one measured on another fold (``Run.fold_of``)."""
    final_of: str | None = None
    """The screened trial whose candidate this one trained at its final size."""

    @property
    def fixed_seconds(self) -> float:
        return max(0.0, self.wall_seconds - self.train_seconds)


class Pace:
    """Measured seconds per training image, and fixed cost per trial, by architecture;
    registered ``cost=`` ratios fill in architectures not measured yet. Seconds are kept
    per unit of size cost (``Sizes``): an outcome at a size of cost 4 is learnt as a
    quarter of its seconds, and ``epoch_seconds`` scales them back by the size asked."""

    def __init__(self, costs: dict[str, float] | None = None):
        self.costs = dict(costs or {})
        self.per_image: dict[str, float] = {}
        self.val: dict[str, float] = {}
        self.fixed: dict[str, list[float]] = {}

    def learn(self, outcome: Outcome, size_cost: float = 1.0) -> None:
        architecture = outcome.candidate.architecture
        if outcome.seconds_per_image:
            per_image = outcome.seconds_per_image / size_cost
            val = outcome.val_seconds / size_cost
            known = self.per_image.get(architecture, math.inf), self.val.get(architecture, math.inf)
            self.per_image[architecture] = min(known[0], per_image)
            self.val[architecture] = min(known[1], val)
        if outcome.wall_seconds > 0:
            self.fixed.setdefault(architecture, []).append(outcome.fixed_seconds)

    def seconds_per_image(self, architecture: str) -> float | None:
        """Measured, else the prior: its ``cost`` times the least measured seconds per
        unit of cost; ``None`` when there is nothing to go on."""
        if architecture in self.per_image:
            return self.per_image[architecture]
        per_unit = [s / self.costs[a] for a, s in self.per_image.items() if self.costs.get(a)]
        if not per_unit or not self.costs.get(architecture):
            return None
        return min(per_unit) * self.costs[architecture]

    def fixed_seconds(self, architecture: str) -> float:
        """Its own fixed cost if measured, else the least measured, else a default."""
        own = self.fixed.get(architecture)
        if own:
            return min(own)
        every = [s for seconds in self.fixed.values() for s in seconds]
        return min(every, default=DEFAULT_FIXED_SECONDS)

    def epoch_seconds(self, architecture: str, images: int, size_cost: float = 1.0) -> float | None:
        """An epoch of ``images`` and its validation pass (unmeasured: the most measured
        validation pass, a fair guess for a slower architecture), at a size of
        ``size_cost``."""
        per_image = self.seconds_per_image(architecture)
        if per_image is None:
            return None
        val = self.val.get(architecture, max(self.val.values(), default=0))
        return (per_image * images + val) * size_cost


@dataclass(frozen=True)
class Sizes:
    """One way an architecture's size varies: the hyperparameter that sets it (its full
    name, scope included), each value's training cost relative to its default (cost 1),
    and the value candidates are screened at (``None``: the default)."""

    hyperparameter: str
    costs: dict[Any, float]
    screen: Any = None

    def cost(self, values: dict[str, Any]) -> float:
        """The cost of the value in ``values`` (the default's, 1, when absent)."""
        return self.costs.get(values.get(self.hyperparameter), 1.0)
