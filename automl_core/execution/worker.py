"""The process a trial runs in: ``python -m automl_core.execution.worker RUN_DIR TRIAL_ID``.

It reads the trial's ``spec.json`` and the run's data split (memory-mapped), loads the
same plugins as the search, trains, and writes the result to the trial directory. Started
with ``-`` for the trial id, it is a warm process: it imports TensorFlow, loads the
plugins and the data, then waits for its trial id on stdin, so the next trial on a slot
does not wait for all that. It still runs one trial only. The
built model's hyperparameters and each epoch are reported as JSON lines on stdout;
everything else goes to stderr (the trial's log). A ``STOP`` file in the trial folder
asks it to stop after the current epoch (a file, not a signal: no race with start-up,
and it works on shared storage). Ctrl+C is left to the parent; it dies with its parent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

WAIT_FOR_TRIAL = "-"
PARENT_ENV = "AUTOML_PARENT_PID"
THREADS_ENV = "AUTOML_THREADS"
PRECISION_ENV = "AUTOML_PRECISION"
STOP_FILE = "STOP"
UNUSED_IN_TRIALS = ("sklearn", "matplotlib", "IPython")
"""Optional libraries that Keras and keras-tuner import eagerly when installed (for
scikit-learn wrappers, the Bayesian oracle, image galleries, a notebook file editor), none
of which a trial uses: kept out while those import, they take 1.5 to 2 s off every
trial's start."""


def main(argv: list[str]) -> int:
    run_dir, trial_id = Path(argv[0]), argv[1]
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the event stream

    _configure_tensorflow()
    from automl_core.data.dataset import load_split
    from automl_core.plugin.manager import load_plugins
    from automl_core.rundir import read_json
    from automl_core.training.trial import TrialSpec, run_trial

    plugins = load_plugins(read_json(run_dir / "config.json")["plugins"])
    data = load_split(run_dir / "data")
    if trial_id == WAIT_FOR_TRIAL:
        ready = time.perf_counter()
        trial_id = sys.stdin.readline().strip()
        if not trial_id:  # the search ended without a trial for this process
            return 0
        log = open(run_dir / "trials" / trial_id / "log.txt", "ab")  # noqa: SIM115
        os.dup2(log.fileno(), 2)
        os.dup2(2, 1)
        print(
            f"automl: warm process {os.getpid()}, ready "
            f"{time.perf_counter() - ready:.1f}s before its trial",
            file=sys.stderr,
        )
    trial_dir = run_dir / "trials" / trial_id
    spec = TrialSpec.load(trial_dir)
    for failure in plugins.failures:
        print(f"automl: warning: {failure}", file=sys.stderr)
    architecture = plugins["architectures"].get(spec.architecture)
    _set_precision(architecture)

    class Events:
        """Each event is one JSON line on the parent's pipe."""

        def built(self, hp_config: dict) -> None:
            events.write(json.dumps({"built": hp_config}) + "\n")

        def epoch(self, epoch: int, logs: dict[str, float]) -> None:
            events.write(json.dumps({"epoch": epoch, "logs": logs}) + "\n")

    run_trial(
        spec,
        data,
        architecture.obj,
        plugins["augmenters"].get(spec.augmenter).obj,
        Events(),
        stop_requested=(trial_dir / STOP_FILE).exists,
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


def _configure_tensorflow() -> None:
    """Import TensorFlow and keras-tuner without what no trial uses; threads for this CPU
    slot, memory growth on GPUs."""
    blocked = [name for name in UNUSED_IN_TRIALS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))  # None in sys.modules: ImportError
    try:
        import keras_tuner  # noqa: F401  (trials read their hyperparameters with it)
        import tensorflow as tf
    finally:  # a plugin that imports one of them still gets it
        for name in blocked:
            del sys.modules[name]

    threads = os.environ.get(THREADS_ENV)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def _set_precision(architecture) -> None:
    """Mixed precision for this trial, where ``--precision`` and the architecture allow."""
    import keras
    import tensorflow as tf

    policy = training_policy(
        os.environ.get(PRECISION_ENV, "auto"),
        on_gpu=bool(tf.config.list_physical_devices("GPU")),
        declared=bool(architecture.info.get("mixed_precision")),
    )
    keras.mixed_precision.set_global_policy(policy or "float32")


def training_policy(precision: str, *, on_gpu: bool, declared: bool) -> str | None:
    """The Keras dtype policy a trial trains under (``None``: float32).

    ``mixed``: float16 compute on GPUs, bfloat16 on CPUs. ``auto``: bfloat16 on CPUs with
    bfloat16 matrix units (Intel AMX), where it about halves a convnet's training time,
    for architectures ``declared`` safe in mixed precision (``mixed_precision=True``);
    float32 elsewhere. Models are saved in float32 whatever they trained in.
    """
    if precision == "mixed":
        return "mixed_float16" if on_gpu else "mixed_bfloat16"
    if precision == "auto" and declared and not on_gpu and cpu_has_bfloat16_matrix_units():
        return "mixed_bfloat16"
    return None


def cpu_has_bfloat16_matrix_units() -> bool:
    """Linux: the CPU flags include ``amx_bf16``."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the result is saved: skip TensorFlow's teardown (about a second)
