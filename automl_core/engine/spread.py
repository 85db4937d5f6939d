"""A candidate's scores over the folds it was validated on, and a ranking that calls
differences within their noise ties and gives them to the cheaper candidate.

Pure: the policy ranks its outcomes with it and the leaderboard its trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Scores:
    """One candidate's score on each fold it was validated on (higher is better)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float:
        """The standard deviation over the folds; 0 for a single fold."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def summary(self) -> dict:
        """What the leaderboard records: each fold's score, their mean and spread."""
        return {"scores": list(self.values), "mean": self.mean, "spread": self.spread}


def fold_scores(
    trials: Iterable[T],
    score: Callable[[T], float],
    trial_id: Callable[[T], str],
    fold_of: Callable[[T], str | None],
) -> dict[str, Scores]:
    """By trial id, each completed trial of a candidate's own (no ``fold_of``): its score,
    then those of the trials that measured its candidate on other folds."""
    trials = list(trials)
    measured = {trial_id(t): [score(t)] for t in trials if not fold_of(t)}
    for other in trials:
        if fold_of(other) in measured:
            measured[fold_of(other)].append(score(other))
    return {name: Scores(tuple(values)) for name, values in measured.items()}


def pooled_spread(scores: Sequence[Scores]) -> float:
    """The fold-to-fold standard deviation of one score, pooled over the candidates
    measured on more than one fold: the noise of a single validation split. 0 when
    none was (no noise measured: only equal scores tie)."""
    several = [s for s in scores if len(s.values) > 1 and all(map(math.isfinite, s.values))]
    freedom = sum(len(s.values) - 1 for s in several)
    if not freedom:
        return 0.0
    return math.sqrt(sum(s.spread**2 * (len(s.values) - 1) for s in several) / freedom)


def rank_within_noise(
    items: Sequence[T], scores: Callable[[T], Scores], cost: Callable[[T], float]
) -> list[T]:
    """``items`` best first. The best mean, and every mean less than one standard error of
    the difference below it, are tied; the cheapest of them comes first (the better mean
    among equally cheap ones), and the rest are ranked again the same way. Only means
    over several folds tie: a single score (a final run on all the training images) is
    not comparable in noise with a screening's fold mean, so it is ranked by its value."""
    measured = {id(item): scores(item) for item in items}
    noise = pooled_spread(list(measured.values()))
    left, ranked = list(items), []
    while left:
        best = max(left, key=lambda item: measured[id(item)].mean)
        top = measured[id(best)]

        def tied(item: T, top: Scores = top) -> bool:
            own = measured[id(item)]
            if own.mean == top.mean:
                return True
            if len(own.values) < 2 or len(top.values) < 2:
                return False
            error = noise * math.sqrt(1 / len(top.values) + 1 / len(own.values))
            return own.mean >= top.mean - error

        chosen = min(
            (item for item in left if tied(item)),
            key=lambda item: (cost(item), -measured[id(item)].mean),
        )
        ranked.append(chosen)
        left = [item for item in left if item is not chosen]
    return ranked
