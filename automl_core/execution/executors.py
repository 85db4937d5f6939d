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

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from automl_core import hookimpl
from automl_core.execution.devices import Slot, plan_slots
from automl_core.execution.worker import (
    PARENT_ENV,
    PRECISION_ENV,
    STOP_FILE,
    THREADS_ENV,
    WAIT_FOR_TRIAL,
)
from automl_core.training.trial import FAILED, TrialResult, TrialSpec, run_trial

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun


class SearchListener(Protocol):
    """What the engine wants to hear about running trials (see ``TrialListener``)."""

    def trial_built(self, spec: TrialSpec, hp_config: dict) -> None: ...

    def trial_epoch(self, spec: TrialSpec, epoch: int, logs: dict[str, float]) -> None: ...


@dataclass
class BoundListener:
    """A ``TrialListener`` for one trial, passing its events on with its spec."""

    spec: TrialSpec
    listener: SearchListener

    def built(self, hp_config: dict) -> None:
        self.listener.trial_built(self.spec, hp_config)

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        self.listener.trial_epoch(self.spec, epoch, logs)


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
        self.queued.append(spec)

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        if not self.queued:
            return []
        spec = self.queued.pop(0)
        plugins = self.search_run.plugins
        architecture = plugins["architectures"].get(spec.architecture)
        return [
            run_trial(
                spec,
                self.search_run.data,
                architecture.obj,
                plugins["augmenters"].get(spec.augmenter).obj,
                BoundListener(spec, listener),
                stop_requested=lambda: self.stop_requested,
                prepare=architecture.info.get("prepare"),
            )
        ]

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
        self.run_dir = run.run_dir.path
        self.slots = plan_slots(config.devices, config.workers)
        self.free = list(self.slots)
        self.precision = config.precision
        self.running: dict[str, _Running] = {}
        self.events: queue.Queue = queue.Queue()
        self.warm: dict[str, subprocess.Popen] = {}
        """Slot name -> a process ready for that slot's next trial."""
        self.stopping = False

    def free_slots(self) -> int:
        return len(self.free)

    def _start(self, slot: Slot, trial_id: str, log) -> subprocess.Popen:
        env = os.environ | slot.env | {PARENT_ENV: str(os.getpid()), PRECISION_ENV: self.precision}
        if slot.threads:
            env[THREADS_ENV] = str(slot.threads)
        return subprocess.Popen(
            [sys.executable, "-m", "automl_core.execution.worker", str(self.run_dir), trial_id],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.PIPE if trial_id == WAIT_FOR_TRIAL else subprocess.DEVNULL,
            env=env,
        )

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
            self.warm[slot.name] = self._start(slot, WAIT_FOR_TRIAL, subprocess.DEVNULL)

    def submit(self, spec: TrialSpec) -> None:
        slot = self.free.pop(0)
        spec.device = slot.name
        trial_dir = Path(spec.trial_dir)
        trial_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ("metrics.json", STOP_FILE):  # from an interrupted attempt
            (trial_dir / leftover).unlink(missing_ok=True)
        spec.save()
        process = self._warm_process(slot, spec.trial_id)
        if process is None:
            with open(trial_dir / "log.txt", "ab") as log:
                process = self._start(slot, spec.trial_id, log)
        self.running[spec.trial_id] = _Running(spec, slot, process, time.time())
        threading.Thread(target=self._relay, args=(spec, process), daemon=True).start()

    def _relay(self, spec: TrialSpec, process: subprocess.Popen) -> None:
        """Forward the worker's event lines, then its exit, to the event queue."""
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.put((spec.trial_id, event))
        process.wait()
        self.events.put((spec.trial_id, None))

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        ended: list[TrialResult] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                trial_id, event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return ended
            running = self.running[trial_id]
            if event is not None:
                trial = BoundListener(running.spec, listener)
                if "built" in event:
                    trial.built(event["built"])
                else:
                    trial.epoch(event["epoch"], event["logs"])
                    self._keep_warm(running.slot)
                continue
            ended.append(self._collect(self.running.pop(trial_id)))
            self.free.append(running.slot)
            deadline = time.monotonic()  # hand back what ended; keep draining only what's queued

    def _collect(self, running: _Running) -> TrialResult:
        spec, log = running.spec, Path(running.spec.trial_dir) / "log.txt"
        return trial_outcome(spec, running.process.returncode, _last_line(log), running.started_at)

    def stop(self, *, now: bool) -> None:
        self.stopping = True
        for process in self.warm.values():
            process.kill()
        for running in self.running.values():
            if now:
                running.process.kill()
            else:
                (Path(running.spec.trial_dir) / STOP_FILE).touch()

    def close(self) -> None:
        self.stop(now=True)
        for process in [*self.warm.values(), *(r.process for r in self.running.values())]:
            process.wait()
        self.warm.clear()


def trial_outcome(spec: TrialSpec, exit_code: int, last_log_line: str, started_at: float):
    """The result a trial process saved, or a failed one saying how the process ended."""
    if (Path(spec.trial_dir) / "metrics.json").exists():
        return TrialResult.load(Path(spec.trial_dir))
    if exit_code < 0:
        reason = f"trial process killed by {signal.Signals(-exit_code).name}"
        if exit_code == -signal.SIGKILL:
            reason += " (out of memory, or killed from outside)"
    else:
        reason = f"trial process exited with code {exit_code}: {last_log_line}"
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
    result.save(Path(spec.trial_dir))
    return result


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


@hookimpl
def register_executors(register):
    register("local", ProcessPool, description="one process per trial on each free GPU or CPU slot")
    register(
        "inline", InlineExecutor, description="one trial at a time in the search's own process"
    )
