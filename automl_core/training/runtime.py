"""TensorFlow set up for a process that trains (a trial's, or the precision probe's), and
TensorFlow's start-up notices kept off stderr in every process that imports it."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

UNUSED_IN_TRIALS = ("sklearn", "matplotlib", "IPython")
"""Optional libraries that Keras and keras-tuner import eagerly when installed (for
scikit-learn wrappers, the Bayesian oracle, image galleries, a notebook file editor), none
of which a trial uses: kept out while those import, they take 1.5 to 2 s off every
trial's start."""
DEBUG_ENV = "AUTOML_DEBUG"
"""Set (by ``automl --debug``, inherited by trial processes): start-up notices are kept."""
STARTUP_NOTICE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ (?:"
    rb"port\.cc:\d+\] oneDNN custom operations are on"
    rb"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    rb"|cuda_platform\.cc:\d+\] failed call to cuInit: .*\((?:100|303)\)"  # no GPU, no driver
    rb"|cuda_(?:fft|dnn|blas)\.cc:\d+\] Unable to register cu\w+ factory"
    rb")"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
)
"""Lines TensorFlow's C++ writes to fd 2 on import and on its first device query, which
``TF_CPP_MIN_LOG_LEVEL`` does not silence: notices about this machine, not errors."""


def configure_tensorflow(threads: int = 0) -> None:
    """Import TensorFlow and keras-tuner without what no trial uses; ``threads`` for this
    CPU slot (0: TensorFlow's own choice), memory growth on GPUs."""
    blocked = [name for name in UNUSED_IN_TRIALS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))  # None in sys.modules: ImportError
    try:
        tf = import_tensorflow()
        import keras_tuner  # noqa: F401  (trials read their hyperparameters with it)
    finally:  # a plugin that imports one of them still gets it
        for name in blocked:
            del sys.modules[name]

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def import_tensorflow() -> ModuleType:
    """``tensorflow``, imported and its devices found with its start-up notices hidden
    (unless an earlier import saw them)."""
    hide_startup_notices_on_import()
    import tensorflow as tf

    return tf


@contextmanager
def startup_notices_hidden() -> Iterator[None]:
    """Pass file descriptor 2 through a filter that drops ``STARTUP_NOTICE`` lines and
    keeps every other one, in order; nothing is filtered when ``DEBUG_ENV`` is set."""
    try:
        stderr = None if os.environ.get(DEBUG_ENV) else os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        stderr = None
    if stderr is None:
        yield
        return
    sys.stderr.flush()
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    copier = threading.Thread(target=_copy_lines, args=(read, stderr), daemon=True)
    copier.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)  # the pipe's last writer closes: the copier reads to its end
        copier.join()
        os.close(stderr)


def _copy_lines(read: int, stderr: int) -> None:
    with open(read, "rb") as source, open(stderr, "wb", buffering=0, closefd=False) as target:
        for line in source:
            if not STARTUP_NOTICE.match(line):
                target.write(line)


def hide_startup_notices_on_import() -> None:
    """Have this process's first ``import tensorflow``, whichever module makes it, run as
    ``import_tensorflow`` does (an import hook)."""
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _TensorFlowFinder) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _TensorFlowFinder())


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, to be loaded by a ``_QuietLoader``;
    then leaves the import system."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Loads ``tensorflow`` with its own loader, with its start-up notices hidden."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with startup_notices_hidden():
            self.loader.exec_module(module)
            module.config.list_physical_devices()
