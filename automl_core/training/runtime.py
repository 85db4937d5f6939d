"""TensorFlow set up for a process that trains: a trial's, or the precision probe's."""

from __future__ import annotations

import sys

UNUSED_IN_TRIALS = ("sklearn", "matplotlib", "IPython")
"""Optional libraries that Keras and keras-tuner import eagerly when installed (for
scikit-learn wrappers, the Bayesian oracle, image galleries, a notebook file editor), none
of which a trial uses: kept out while those import, they take 1.5 to 2 s off every
trial's start."""


def configure_tensorflow(threads: int = 0) -> None:
    """Import TensorFlow and keras-tuner without what no trial uses; ``threads`` for this
    CPU slot (0: TensorFlow's own choice), memory growth on GPUs."""
    blocked = [name for name in UNUSED_IN_TRIALS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))  # None in sys.modules: ImportError
    try:
        import keras_tuner  # noqa: F401  (trials read their hyperparameters with it)
        import tensorflow as tf
    finally:  # a plugin that imports one of them still gets it
        for name in blocked:
            del sys.modules[name]

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
