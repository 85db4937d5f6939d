"""The joint search space: which architecture and augmenter, then each one's own scope.

Every component declares its hyperparameters on the ``hp`` it is handed, inside a
conditional scope, so a trial's values hold only what its own candidate uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

ARCHITECTURE = "architecture"
AUGMENTER = "augmenter"
AUGMENTER_PREFIX = "aug_"
"""Augmenter hyperparameters live under ``aug_<name>/`` so they never collide with an
architecture of the same name."""


def initial_space(architectures: list[str], augmenters: list[str]):
    """The space before any component declared its own hyperparameters."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Choice(ARCHITECTURE, architectures, default=architectures[0])
    hp.Choice(AUGMENTER, augmenters, default=augmenters[0])
    return hp


@contextmanager
def architecture_scope(hp, name: str) -> Iterator[None]:
    """Declare hyperparameters that exist only when ``architecture == name``."""
    with hp.conditional_scope(ARCHITECTURE, [name]), hp.name_scope(name):
        yield


@contextmanager
def augmenter_scope(hp, name: str) -> Iterator[None]:
    """Declare hyperparameters that exist only when ``augmenter == name``."""
    with hp.conditional_scope(AUGMENTER, [name]), hp.name_scope(AUGMENTER_PREFIX + name):
        yield


def from_config(config: dict):
    """``HyperParameters`` from ``get_config()`` output.

    keras-tuner's ``from_config`` consumes its argument (conditions are turned into
    objects in place), so it is handed a fresh JSON copy.
    """
    import json

    import keras_tuner

    return keras_tuner.HyperParameters.from_config(json.loads(json.dumps(config)))


def active_values(hp) -> dict:
    """The values this candidate uses, scope prefixes kept (JSON-friendly)."""
    return {p.name: hp.values[p.name] for p in hp.space if hp.is_active(p) and p.name in hp.values}


def short_name(name: str) -> str:
    """``baseline_cnn/filters`` -> ``filters``, for compact display."""
    return name.rsplit("/", 1)[-1]
