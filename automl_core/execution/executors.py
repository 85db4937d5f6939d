"""Where trials run.

``local`` (the default) starts one process per trial, pinned to a free device slot: a GPU
each, or a share of the CPU cores (``--workers``). A crash, an out-of-memory error or a
SIGKILL then takes down one trial, and GPU memory is returned when its process ends. Once
a GPU slot's trial has trained its first epoch, the process for the slot's next trial
starts and gets ready (TensorFlow, plugins, data) while the GPU trains. Not on CPU slots:
there the start-up would take its cores from the trial training (measured: no net gain).
``inline`` trains in the calling process, one trial at a time: for debugging, and for
plugins registered in memory rather than from a file or module.
"""

from __future__ import annotations

import errno
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from automl_core import hookimpl
from automl_core.execution.devices import Slot, plan_slots
from automl_core.execution.protocol import (
    WAIT_FOR_TRIAL,
    Epoch,
    Event,
    EventSender,
    Exited,
    SearchListener,
    ask_to_stop,
    outcome,
    prepare_trial_dir,
    read_events,
    start_worker,
    tell,
    worker_env,
)
from automl_core.rundir import TrialDir
from automl_core.training.trial import FAILED, TrialResult, TrialSpec, run_trial

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun


class Executor(Protocol):
    """Runs trials; a failing trial comes back as a failed result, never as an exception."""

    def free_slots(self) -> int:
        """How many more trials ``submit`` accepts right now."""

    def submit(self, spec: TrialSpec) -> None:
        """Start a trial (``spec.device`` is set to the slot it gets)."""

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        """Pass on trial events as they happen; return the trials that ended in ``timeout``."""

    def stop(self, *, now: bool) -> None:
        """Ask running trials to stop after their current epoch, or kill them ``now``."""

    def close(self) -> None:
        """Release everything; no trial keeps running."""


class InlineExecutor:
    """Trains each trial in this process, one after another."""

    def __init__(self, run: SearchRun):
        self.search_run = run
        self.queued: list[TrialSpec] = []
        self.stop_requested = False

    def free_slots(self) -> int:
        return 0 if self.queued else 1

    def submit(self, spec: TrialSpec) -> None:
        spec.device = "inline"
        prepare_trial_dir(spec)
        self.queued.append(spec)

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        if not self.queued:
            return []
        spec = self.queued.pop(0)
        plugins = self.search_run.plugins
        architecture = plugins["architectures"].get(spec.architecture)
        result = run_trial(
            spec,
            self.search_run.data,
            architecture.obj,
            plugins["augmenters"].get(spec.augmenter).obj,
            EventSender(lambda event: tell(listener, spec, event)),
            stop_requested=lambda: self.stop_requested,
            prepare=architecture.info.get("prepare"),
        )
        return [unless_disk_full(spec, result)]

    def stop(self, *, now: bool) -> None:
        self.stop_requested = True

    def close(self) -> None:
        self.queued.clear()


@dataclass
class _Running:
    spec: TrialSpec
    slot: Slot
    process: subprocess.Popen
    started_at: float


class ProcessPool:
    """One spawned process per trial, as many at once as there are device slots."""

    def __init__(self, run: SearchRun):
        config = run.config
        self.run_dir = run.run_dir
        self.slots = plan_slots(config.devices, config.workers)
        self.free = list(self.slots)
        self.precision = config.precision
        self.running: dict[str, _Running] = {}
        self.events: queue.Queue[tuple[str, Event]] = queue.Queue()
        self.warm: dict[str, subprocess.Popen] = {}
        """Slot name -> a process ready for that slot's next trial."""
        self.stopping = False

    def free_slots(self) -> int:
        return len(self.free)

    def _start(self, slot: Slot, trial_id: str) -> subprocess.Popen:
        env = slot.env | worker_env(self.precision, slot.threads)
        return start_worker(self.run_dir.path, trial_id, env)

    def _warm_process(self, slot: Slot, trial_id: str) -> subprocess.Popen | None:
        """The slot's warm process, handed ``trial_id``; ``None`` if there is none alive."""
        process = self.warm.pop(slot.name, None)
        if process is None or process.poll() is not None:
            return None
        try:
            process.stdin.write(f"{trial_id}\n".encode())
            process.stdin.close()
        except OSError:
            process.kill()
            return None
        return process

    def _keep_warm(self, slot: Slot) -> None:
        """GPU slots only: on a CPU slot, getting ready would slow the trial training."""
        if slot.is_gpu and slot.name not in self.warm and not self.stopping:
            self.warm[slot.name] = self._start(slot, WAIT_FOR_TRIAL)

    def submit(self, spec: TrialSpec) -> None:
        slot = self.free.pop(0)
        spec.device = slot.name
        prepare_trial_dir(spec)
        process = self._warm_process(slot, spec.trial_id) or self._start(slot, spec.trial_id)
        self.running[spec.trial_id] = _Running(spec, slot, process, time.time())
        threading.Thread(target=self._relay, args=(spec.trial_id, process), daemon=True).start()

    def _relay(self, trial_id: str, process: subprocess.Popen) -> None:
        """Forward the worker's events, then its exit, to the event queue."""
        for event in read_events(process, self.run_dir.trial(trial_id)):
            self.events.put((trial_id, event))

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        ended: list[TrialResult] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                trial_id, event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return ended
            running = self.running[trial_id]
            if not isinstance(event, Exited):
                tell(listener, running.spec, event)
                if isinstance(event, Epoch):
                    self._keep_warm(running.slot)
                continue
            del self.running[trial_id]
            ended.append(
                unless_disk_full(running.spec, outcome(running.spec, event, running.started_at))
            )
            self.free.append(running.slot)
            deadline = time.monotonic()  # hand back what ended; keep draining only what's queued

    def stop(self, *, now: bool) -> None:
        self.stopping = True
        for process in self.warm.values():
            process.kill()
        for running in self.running.values():
            if now:
                running.process.kill()
            else:
                ask_to_stop(running.spec)

    def close(self) -> None:
        self.stop(now=True)
        for process in [*self.warm.values(), *(r.process for r in self.running.values())]:
            process.wait()
        self.warm.clear()


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""A full disk, or a full quota: the search stops (``--resume`` continues it later)."""


def is_disk_full(error: BaseException | str | None) -> bool:
    """Whether ``error`` (an exception, or a trial's one-line error) says the disk is full."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL
    return any(os.strerror(code) in str(error or "") for code in DISK_FULL)


def unless_disk_full(spec: TrialSpec, result: TrialResult) -> TrialResult:
    """``result``; but a trial that failed because the disk is full did not fail on its
    own: its result is dropped and the disk's error raised, so that the search stops and
    ``--resume`` runs the trial again."""
    if result.status == FAILED and is_disk_full(result.error):
        TrialDir(spec.trial_dir).metrics.unlink(missing_ok=True)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), spec.trial_dir)
    return result


@hookimpl
def register_executors(register):
    register("local", ProcessPool, description="one process per trial on each free GPU or CPU slot")
    register(
        "inline", InlineExecutor, description="one trial at a time in the search's own process"
    )
