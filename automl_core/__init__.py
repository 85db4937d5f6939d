"""automl: plugin-based AutoML for image classification on TensorFlow / Keras 3.

This module stays light: importing it (and running ``automl --help``) never imports
TensorFlow. Plugin authors need only ``hookimpl``.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("automl")

try:
    __version__ = version("automl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
