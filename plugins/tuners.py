"""Search strategies, each a keras-tuner Oracle the engine drives directly.

Every factory takes ``objective, max_trials, max_epochs, seed, hyperparameters``.
"""

from __future__ import annotations

from automl_core import hookimpl


@hookimpl
def register_tuners(register):
    register("random", random_search, description="random search (keras-tuner RandomSearch)")
    register(
        "bayesian",
        bayesian_optimization,
        description="Gaussian-process Bayesian optimisation after a few random trials",
    )
    register(
        "hyperband",
        hyperband,
        description="Hyperband: many short trainings, the best promoted to more epochs",
    )
    register(
        "grid",
        grid_search,
        description="every combination of the discrete hyperparameters, in order",
        warm_start=False,
    )


def random_search(*, objective, max_trials, max_epochs, seed, hyperparameters):
    import keras_tuner

    return keras_tuner.oracles.RandomSearchOracle(
        objective=objective, max_trials=max_trials, seed=seed, hyperparameters=hyperparameters
    )


def bayesian_optimization(*, objective, max_trials, max_epochs, seed, hyperparameters):
    import keras_tuner

    return keras_tuner.oracles.BayesianOptimizationOracle(
        objective=objective, max_trials=max_trials, seed=seed, hyperparameters=hyperparameters
    )


def hyperband(*, objective, max_trials, max_epochs, seed, hyperparameters):
    """Brackets of successive halving over up to ``max_epochs`` epochs, factor 3."""
    import keras_tuner

    return keras_tuner.oracles.HyperbandOracle(
        objective=objective,
        max_epochs=max_epochs,
        factor=3,
        hyperband_iterations=None if max_trials is None else 1,
        seed=seed,
        hyperparameters=hyperparameters,
    )


def grid_search(*, objective, max_trials, max_epochs, seed, hyperparameters):
    import keras_tuner

    return keras_tuner.oracles.GridSearchOracle(
        objective=objective, max_trials=max_trials, seed=seed, hyperparameters=hyperparameters
    )
