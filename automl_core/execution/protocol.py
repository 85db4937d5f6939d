"""The worker protocol: how an executor starts a trial's process and hears from it.

Every executor that runs trials in their own process (``local``, the ``ray`` plugin) goes
through this module, and the worker (``automl_core.execution.worker``) speaks it:

- ``prepare_trial_dir`` readies the trial's folder; ``start_worker`` starts
  ``python -m automl_core.execution.worker RUN_DIR TRIAL_ID`` (``WAIT_FOR_TRIAL`` for the
  id: a warm process that reads it from stdin), its stderr into the trial's log;
- the worker reports ``Built`` and ``Epoch`` events, one ``encode``\\ d JSON line each on
  its stdout; ``read_events`` decodes them, skipping any other line, and ends with the
  process's ``Exited``;
- ``ask_to_stop`` asks the trial to stop after its epoch (a file the worker watches);
- ``outcome`` is then the result the worker saved, or a failed one saying how the
  process ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from automl_core.rundir import RunDir, TrialDir
from automl_core.training.trial import FAILED, TrialResult, TrialSpec


class SearchListener(Protocol):
    """What the engine wants to hear about running trials (see ``TrialListener``)."""

    def trial_built(self, spec: TrialSpec, hp_config: dict) -> None: ...

    def trial_epoch(self, spec: TrialSpec, epoch: int, logs: dict[str, float]) -> None: ...


WORKER_MODULE = "automl_core.execution.worker"
WAIT_FOR_TRIAL = "-"
"""The trial id that starts a warm worker: it gets ready, then reads its trial id on stdin."""
PARENT_ENV = "AUTOML_PARENT_PID"
THREADS_ENV = "AUTOML_THREADS"
PRECISION_ENV = "AUTOML_PRECISION"


@dataclass(frozen=True)
class Built:
    """The model is built: ``hp_config`` holds every hyperparameter the candidate uses."""

    hp_config: dict[str, Any]


@dataclass(frozen=True)
class Epoch:
    """An epoch ended (``epoch`` counts from 1) with these Keras logs."""

    epoch: int
    logs: dict[str, float]


@dataclass(frozen=True)
class Exited:
    """The worker process ended: its exit code and the last line of its log."""

    exit_code: int
    last_log_line: str


Event = Built | Epoch | Exited
EVENTS: dict[str, type[Event]] = {kind.__name__: kind for kind in (Built, Epoch, Exited)}


def encode(event: Event) -> str:
    """``event`` as one JSON line (newline included) for the worker's event pipe."""
    return json.dumps({"event": type(event).__name__, **asdict(event)}) + "\n"


def decode(line: str | bytes) -> Event | None:
    """The event on ``line``; ``None`` for a line that is not one (a plugin's print)."""
    try:
        fields = json.loads(line)
        return EVENTS[fields.pop("event")](**fields)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class EventSender:
    """A ``TrialListener`` that turns what a trial reports into events for ``send``."""

    def __init__(self, send: Callable[[Event], object]):
        self.send = send

    def built(self, hp_config: dict[str, Any]) -> None:
        self.send(Built(hp_config))

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        self.send(Epoch(epoch, logs))


def tell(listener: SearchListener, spec: TrialSpec, event: Built | Epoch) -> None:
    """Pass a running trial's event on to the search."""
    if isinstance(event, Built):
        listener.trial_built(spec, event.hp_config)
    else:
        listener.trial_epoch(spec, event.epoch, event.logs)


def worker_env(precision: str, threads: int | None) -> dict[str, str]:
    """The settings a worker reads from its environment: precision, CPU threads."""
    env = {PRECISION_ENV: precision}
    if threads:
        env[THREADS_ENV] = str(threads)
    return env


def prepare_trial_dir(spec: TrialSpec) -> None:
    """Ready the trial's folder for a (re)run: no result or stop request left from an
    interrupted attempt, its spec saved for the worker to read."""
    trial = TrialDir(spec.trial_dir)
    trial.path.mkdir(parents=True, exist_ok=True)
    trial.metrics.unlink(missing_ok=True)
    trial.stop.unlink(missing_ok=True)
    spec.save()


def start_worker(run_dir: Path, trial_id: str, env: dict[str, str]) -> subprocess.Popen:
    """Start the worker for ``trial_id`` with ``env`` added to this process's environment;
    its stderr goes to the trial's log (``WAIT_FOR_TRIAL``: nowhere until it has a trial)."""
    warm = trial_id == WAIT_FOR_TRIAL
    log = RunDir(run_dir).trial(trial_id).log
    with nullcontext(subprocess.DEVNULL) if warm else open(log, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(run_dir), trial_id],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.PIPE if warm else subprocess.DEVNULL,
            env=os.environ | env | {PARENT_ENV: str(os.getpid())},
        )


def read_events(process: subprocess.Popen, trial: TrialDir) -> Iterator[Event]:
    """The worker's events as it sends them, then its ``Exited`` (``trial``: its folder)."""
    for line in process.stdout:
        event = decode(line)
        if event is not None:
            yield event
    yield Exited(process.wait(), last_line(trial.log))


def ask_to_stop(spec: TrialSpec) -> None:
    """Ask the trial to stop after its current epoch; it ends ``stopped``."""
    TrialDir(spec.trial_dir).stop.touch()


def last_line(log: Path) -> str:
    """The last non-empty line of a trial's log: usually why its process failed."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


def outcome(spec: TrialSpec, exited: Exited, started_at: float) -> TrialResult:
    """The result the trial's process saved, or a failed one saying how the process ended."""
    trial = TrialDir(spec.trial_dir)
    if trial.metrics.exists():
        return TrialResult.load(trial)
    code = exited.exit_code
    if code < 0:
        reason = f"trial process killed by {signal.Signals(-code).name}"
        if code == -signal.SIGKILL:
            reason += " (out of memory, or killed from outside)"
    else:
        reason = f"trial process exited with code {code}: {exited.last_log_line}"
    return failed_result(spec, reason, started_at)


def failed_result(spec: TrialSpec, reason: str, started_at: float) -> TrialResult:
    """A failed trial's result, saved in its folder like any other."""
    result = TrialResult(
        spec.trial_id,
        spec.architecture,
        spec.augmenter,
        FAILED,
        error=reason,
        device=spec.device,
        started_at=started_at,
        ended_at=time.time(),
    )
    result.save(TrialDir(spec.trial_dir))
    return result
