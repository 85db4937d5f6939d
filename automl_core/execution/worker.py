"""The process a trial runs in: ``python -m automl_core.execution.worker RUN_DIR TRIAL_ID``.

It reads the trial's ``spec.json`` and the run's data split (memory-mapped), loads the
same plugins as the search, trains, and writes the result to the trial directory. Started
with ``-`` for the trial id, it is a warm process: it imports TensorFlow, loads the
plugins and the data, then waits for its trial id on stdin, so the next trial on a slot
does not wait for all that. It still runs one trial only. The
built model's hyperparameters and each epoch are reported as events on stdout
(``automl_core.execution.protocol``); everything else goes to stderr (the trial's log).
A ``STOP`` file in the trial folder asks it to stop after the current epoch (a file, not
a signal: no race with start-up, and it works on shared storage). Ctrl+C is left to the
parent; it dies with its parent.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from automl_core.execution.protocol import (
    PARENT_ENV,
    PRECISION_ENV,
    THREADS_ENV,
    WAIT_FOR_TRIAL,
    EventSender,
    encode,
)
from automl_core.rundir import RunDir, read_json
from automl_core.training.runtime import configure_tensorflow


def main(argv: list[str]) -> int:
    run_dir, trial_id = RunDir(Path(argv[0])), argv[1]
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the event stream

    configure_tensorflow(int(os.environ.get(THREADS_ENV) or 0))
    from automl_core.data.dataset import load_split
    from automl_core.plugin.manager import load_plugins
    from automl_core.training.trial import TrialSpec, run_trial

    plugins = load_plugins(read_json(run_dir.config)["plugins"])
    data = load_split(run_dir.data)
    if trial_id == WAIT_FOR_TRIAL:
        ready = time.perf_counter()
        trial_id = sys.stdin.readline().strip()
        if not trial_id:  # the search ended without a trial for this process
            return 0
        log = open(run_dir.trial(trial_id).log, "ab")  # noqa: SIM115
        os.dup2(log.fileno(), 2)
        os.dup2(2, 1)
        print(
            f"automl: warm process {os.getpid()}, ready "
            f"{time.perf_counter() - ready:.1f}s before its trial",
            file=sys.stderr,
        )
    trial = run_dir.trial(trial_id)
    spec = TrialSpec.load(trial)
    for failure in plugins.failures:
        print(f"automl: warning: {failure}", file=sys.stderr)
    architecture = plugins["architectures"].get(spec.architecture)
    _set_precision(architecture, run_dir)
    run_trial(
        spec,
        data,
        architecture.obj,
        plugins["augmenters"].get(spec.augmenter).obj,
        EventSender(lambda event: events.write(encode(event))),
        stop_requested=trial.stop.exists,
        prepare=architecture.info.get("prepare"),
    )
    return 0


def _die_with_parent() -> None:
    """Linux: be killed when the search process dies, so no orphan keeps training."""
    parent = os.environ.get(PARENT_ENV)
    end_with_parent(signal.SIGKILL)
    if parent and os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


def end_with_parent(sig: int) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, sig)


def _set_precision(architecture, run_dir: Path) -> None:
    """Mixed precision for this trial, where ``--precision``, the search's measurement
    (``precision.json``) and the architecture allow."""
    import keras
    import tensorflow as tf

    from automl_core.training.precision import recorded_bfloat16_faster, training_policy

    policy = training_policy(
        os.environ.get(PRECISION_ENV, "auto"),
        on_gpu=bool(tf.config.list_physical_devices("GPU")),
        declared=bool(architecture.info.get("mixed_precision")),
        bfloat16_faster=recorded_bfloat16_faster(run_dir),
    )
    keras.mixed_precision.set_global_policy(policy or "float32")


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the result is saved: skip TensorFlow's teardown (about a second)
