"""A one-file tuner plugin: Bayesian optimisation that models the space after two trials.

automl search photos/ -p examples/plugins/bayesian_tuner.py --tuner bayesian_quick

(The built-in ``bayesian`` tuner waits for more random trials before it models the space.)
"""

from automl_core import hookimpl


@hookimpl
def register_tuners(register):
    register("bayesian_quick", bayesian_quick, description="Bayesian optimisation, 2 random starts")


def bayesian_quick(*, objective, max_trials, max_epochs, seed, hyperparameters):
    """Any keras-tuner Oracle works: the engine drives it trial by trial."""
    import keras_tuner

    return keras_tuner.oracles.BayesianOptimizationOracle(
        objective=objective,
        max_trials=max_trials,
        seed=seed,
        hyperparameters=hyperparameters,
        num_initial_points=2,
    )
