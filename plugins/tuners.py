"""Search strategies, each a keras-tuner Oracle the engine drives directly."""

from __future__ import annotations

from automl_core import hookimpl


@hookimpl
def register_tuners(register):
    register("random", random_search, description="keras-tuner RandomSearch")


def random_search(*, objective, max_trials, seed, hyperparameters):
    import keras_tuner

    return keras_tuner.oracles.RandomSearchOracle(
        objective=objective, max_trials=max_trials, seed=seed, hyperparameters=hyperparameters
    )
