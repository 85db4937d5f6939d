"""automl: plugin-based AutoML for image classification on TensorFlow / Keras 3.

This module stays light: importing it (and running ``automl --help``) never imports
TensorFlow. Plugin authors need only ``hookimpl``; ``search``, ``load`` and
``SearchResult`` (the Python API, ``automl_core.api``) are imported on first use.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("automl")

try:
    __version__ = version("automl-images")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["SearchResult", "__version__", "hookimpl", "load", "search"]
_API = ("SearchResult", "load", "search")


def __getattr__(name: str):
    """``automl_core.search`` and friends, imported from ``automl_core.api`` when asked for."""
    if name in _API:
        from automl_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'automl_core' has no attribute {name!r}")
