"""The ``tensorboard`` tracker: TensorBoard event files, one folder per trial.

``RUN_DIR/tensorboard/<trial_id>/`` gets the Keras logs of every epoch as scalars (step:
the epoch, counting those a continued trial started from, so its curve goes on from its
parent's), and once the trial ends its hyperparameters (the HParams dashboard) and, if
it completed, ``final/<metric>`` scalars. Written with the ``tensorboard`` package's
event file writer, which needs no TensorFlow. See them with
``tensorboard --logdir RUN_DIR/tensorboard``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from automl_core import hookimpl
from automl_plugins.tracking import final_metrics, hyperparameters

if TYPE_CHECKING:
    from pathlib import Path

    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from automl_core.engine.run import SearchRun
    from automl_core.training.trial import TrialResult, TrialSpec


@hookimpl
def register_trackers(register):
    register(
        "tensorboard",
        TensorBoardLogs,
        description="TensorBoard event files per trial in RUN_DIR/tensorboard/",
        needs=("tensorboard",),
        install="automl-images[tensorboard]",
    )


class TensorBoardLogs:
    """Writes a search's trials as TensorBoard runs under the run directory."""

    def __init__(self, run: SearchRun):
        self.root: Path = run.run_dir.tensorboard
        self.writers: dict[str, EventFileWriter] = {}

    def writer(self, trial_id: str) -> EventFileWriter:
        if trial_id not in self.writers:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.writers[trial_id] = EventFileWriter(str(self.root / trial_id))
        return self.writers[trial_id]

    @hookimpl
    def trial_epoch_end(
        self, run: SearchRun, spec: TrialSpec, epoch: int, logs: dict[str, float]
    ) -> None:
        writer = self.writer(spec.trial_id)
        writer.add_event(scalars(logs, epoch))
        writer.flush()  # a TensorBoard already open shows the epoch now

    @hookimpl
    def trial_end(self, run: SearchRun, result: TrialResult) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        writer = self.writer(result.trial_id)
        session = hparams_pb(hyperparameters(result), trial_id=result.trial_id)
        writer.add_event(Event(wall_time=time.time(), summary=session))
        writer.add_event(scalars(final_metrics(result), result.epochs_run))
        self.writers.pop(result.trial_id).close()

    def close(self) -> None:
        """Close the writers of trials that never ended (the search stopped by an error)."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def scalars(values: dict[str, float], step: int) -> Event:
    """One event holding each value as a scalar at ``step``."""
    from tensorboard.compat.proto.event_pb2 import Event

    event = Event(wall_time=time.time(), step=step)
    for tag, value in values.items():
        event.summary.value.add(tag=tag, simple_value=value)
    return event
