"""A one-file tuner plugin: keras-tuner's Bayesian optimisation as a search strategy.

automl search photos/ -p examples/plugins/bayesian_tuner.py --tuner bayesian
"""

from automl_core import hookimpl


@hookimpl
def register_tuners(register):
    register("bayesian", bayesian, description="keras-tuner BayesianOptimizationOracle")


def bayesian(*, objective, max_trials, seed, hyperparameters):
    """Any keras-tuner Oracle works: the engine drives it trial by trial."""
    import keras_tuner

    return keras_tuner.oracles.BayesianOptimizationOracle(
        objective=objective,
        max_trials=max_trials,
        seed=seed,
        hyperparameters=hyperparameters,
        num_initial_points=2,
    )
