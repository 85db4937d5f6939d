"""What every experiment tracker logs of a trial that ended, in the same words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl_core.training.space import ARCHITECTURE, AUGMENTER
from automl_core.training.trial import COMPLETED

if TYPE_CHECKING:
    from automl_core.training.trial import TrialResult

NOT_METRICS = ("initial_epoch", "started_at", "ended_at", "train_images", "batch_size")
"""Numbers of a ``TrialResult`` that are settings or clock times, not results."""


def final_metrics(result: TrialResult) -> dict[str, float]:
    """``final/<name>``: every number a completed trial ended with (validation scores at
    its best epoch, parameters, epochs, seconds), so a metric a later version adds is
    logged too. None for a failed or stopped trial: its epochs hold what it reached."""
    if result.status != COMPLETED:
        return {}
    return {
        f"final/{name}": float(value)
        for name, value in vars(result).items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and name not in NOT_METRICS
    }


def hyperparameters(result: TrialResult) -> dict[str, str | int | float | bool]:
    """The trial's hyperparameter values, its architecture and augmenter first (a trial
    that failed before it was built has only those two)."""
    return {ARCHITECTURE: result.architecture, AUGMENTER: result.augmenter} | (
        result.hyperparameters
    )
