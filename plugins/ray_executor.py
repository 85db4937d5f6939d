"""The ``ray`` executor: the same trials as Ray tasks, on this machine or a cluster.

Each trial is a Ray task that starts the trial's own process through the worker protocol
(``automl_core.execution.protocol``), exactly as the local executor does: one way a trial
runs, and GPU memory returned when it ends. The task streams the worker's events back (a
Ray streaming generator), so the oracle stays in this process. Tasks read the run
directory by path: on a cluster it must live on storage every node mounts at the same
path (docs/scaling.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_core import hookimpl
from automl_core.errors import UsageError
from automl_core.execution.protocol import (
    Exited,
    ask_to_stop,
    failed_result,
    outcome,
    prepare_trial_dir,
    read_events,
    start_worker,
    tell,
    worker_env,
)
from automl_core.rundir import RunDir
from automl_core.training.trial import TrialResult, TrialSpec, one_line

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun
    from automl_core.execution.protocol import SearchListener


@dataclass(frozen=True)
class Placed:
    """The task's first event: where Ray runs the trial (``TrialSpec.device``)."""

    device: str


@dataclass(frozen=True)
class TrialResources:
    """What each trial asks Ray for, and how many trials run at once."""

    trials: int
    num_cpus: float
    num_gpus: float
    threads: int | None
    """TensorFlow threads of a CPU trial (its CPUs); ``None`` on GPUs."""


def plan_resources(cluster: dict[str, float], nodes: int, workers: int | None) -> TrialResources:
    """A GPU per trial (``workers`` trials share one), else ``workers`` CPU trials at once
    (default: one per node), each with its share of the cluster's CPUs."""
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        per_gpu = workers or 1
        return TrialResources(gpus * per_gpu, 1, 1 / per_gpu, None)
    trials = workers or max(1, nodes)
    cpus = max(1, int(cluster.get("CPU", 1)) // trials)
    return TrialResources(trials, cpus, 0, cpus)


@dataclass
class _Running:
    spec: TrialSpec
    events: Any
    """The task's ``ray.ObjectRefGenerator``."""
    started_at: float


class RayExecutor:
    """Runs each trial as a Ray task around the trial's own process."""

    def __init__(self, run: SearchRun):
        import ray  # installed: the search checked the registration's needs=

        config = run.config
        if config.devices is not None:
            raise UsageError("--devices is for the local executor; Ray gives each trial its GPU")
        self.ray = ray
        self.connected_here = _connect(ray, config.ray_address)
        nodes = sum(1 for node in ray.nodes() if node["Alive"])
        self.resources = plan_resources(ray.cluster_resources(), nodes, config.workers)
        self.task = ray.remote(_trial_task).options(
            num_cpus=self.resources.num_cpus,
            num_gpus=self.resources.num_gpus,
            max_retries=0,  # a trial that dies is a failed trial, not one to run again
        )
        self.env = worker_env(config.precision, self.resources.threads)
        if self.resources.threads:
            self.env["CUDA_VISIBLE_DEVICES"] = ""
        self.run_dir = run.run_dir.path.resolve()  # tasks run elsewhere: absolute paths
        self.running: dict[str, _Running] = {}

    def free_slots(self) -> int:
        return self.resources.trials - len(self.running)

    def submit(self, spec: TrialSpec) -> None:
        spec.device = "ray"  # until the task says where it landed
        spec.trial_dir = str(Path(spec.trial_dir).resolve())
        prepare_trial_dir(spec)
        events = self.task.remote(str(self.run_dir), spec.trial_id, self.env)
        self.running[spec.trial_id] = _Running(spec, events, time.time())

    def wait(self, listener: SearchListener, timeout: float) -> list[TrialResult]:
        ended: list[TrialResult] = []
        deadline = time.monotonic() + timeout
        while self.running:
            by_events = {id(r.events): r for r in self.running.values()}
            ready, _ = self.ray.wait(
                [r.events for r in self.running.values()],
                num_returns=1,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            if not ready:
                break
            running = by_events[id(ready[0])]
            result = self._next_event(running, listener)
            if result is not None:
                del self.running[running.spec.trial_id]
                ended.append(result)
                deadline = time.monotonic()  # hand back what ended; drain only what's ready
        return ended

    def _next_event(self, running: _Running, listener: SearchListener) -> TrialResult | None:
        """Pass the trial's next event on; its result once the trial has ended."""
        try:
            event = self.ray.get(next(running.events))
        except self.ray.exceptions.RayError as error:  # the task itself died or was cancelled
            cause = getattr(error, "cause", None)  # a RayTaskError wraps the task's exception
            reason = one_line(cause if isinstance(cause, BaseException) else error)
            if isinstance(cause, FileNotFoundError):
                reason += " (is the run directory on storage every node mounts?)"
            return failed_result(running.spec, f"ray task failed: {reason}", running.started_at)
        if isinstance(event, Placed):
            running.spec.device = event.device
        elif isinstance(event, Exited):
            return outcome(running.spec, event, running.started_at)
        else:
            tell(listener, running.spec, event)
        return None

    def stop(self, *, now: bool) -> None:
        for running in self.running.values():
            if now:
                self.ray.cancel(running.events, force=True)
            else:
                ask_to_stop(running.spec)

    def close(self) -> None:
        self.stop(now=True)
        self.running.clear()
        if self.connected_here:
            self.ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Use the Ray this process already joined, else join ``address``, else start a local
    one; True when this call connected (so ``close`` disconnects)."""
    if ray.is_initialized():
        return False
    options = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UsageError(f"cannot join the Ray cluster at {address}: {one_line(error)}") from error
    return True


def _trial_task(run_dir: str, trial_id: str, env: dict[str, str]):
    """Ray task: run the trial's worker process here; yield where it runs (``Placed``),
    then the worker's events, ending with its ``Exited``."""
    trial = RunDir(Path(run_dir)).trial(trial_id)
    spec = TrialSpec.load(trial)
    spec.device = _device_name()
    spec.save()  # the worker records the device with the result
    yield Placed(spec.device)
    yield from read_events(start_worker(Path(run_dir), trial_id, env), trial)


def _device_name() -> str:
    """``ray:<node address>/gpu:<ids>`` or ``.../cpu``: where this task runs."""
    import ray

    where = f"ray:{ray.util.get_node_ip_address()}"
    gpus = ray.get_gpu_ids()
    return f"{where}/gpu:{','.join(map(str, gpus))}" if gpus else f"{where}/cpu"


@hookimpl
def register_executors(register):
    register(
        "ray",
        RayExecutor,
        description="each trial a Ray task, on this machine or a cluster",
        needs=("ray",),
        install="automl-images[ray]",
    )
