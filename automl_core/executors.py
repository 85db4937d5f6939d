"""Where trials run. ``local``: one trial at a time in this process (the default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from automl_core import hookimpl
from automl_core.trial import EpochCallback, TrialResult, TrialSpec, run_trial

if TYPE_CHECKING:
    from automl_core.engine import SearchRun


class Executor(Protocol):
    """Runs one trial and returns its result; never raises for a failing trial."""

    def run(self, spec: TrialSpec, on_epoch: EpochCallback) -> TrialResult: ...


class LocalExecutor:
    """Trains each trial in the calling process, one after another."""

    def __init__(self, run: SearchRun):
        self.search_run = run

    def run(self, spec: TrialSpec, on_epoch: EpochCallback) -> TrialResult:
        plugins = self.search_run.plugins
        return run_trial(
            spec,
            self.search_run.data,
            plugins["architectures"].get(spec.architecture).obj,
            plugins["augmenters"].get(spec.augmenter).obj,
            on_epoch,
        )


@hookimpl
def register_executors(register):
    register("local", LocalExecutor, description="one trial at a time in this process")
