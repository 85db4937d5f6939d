"""A one-file augmenter plugin: Gaussian pixel noise and brightness jitter.

automl search photos/ -p examples/plugins/noise_augmenter.py --augmenters noise
"""

from automl_core import hookimpl


@hookimpl
def register_augmenters(register):
    register("noise", noise, description="Gaussian pixel noise and random brightness")


def noise(hp):
    """Applied to training batches only; raw pixels 0..255 in and out."""
    import keras
    from keras import layers

    stddev = hp.Float("stddev", 2.0, 16.0, step=2.0, default=8.0)
    return keras.Sequential(
        [
            layers.GaussianNoise(stddev),
            layers.RandomBrightness(0.1, value_range=(0, 255)),
        ],
        name="noise",
    )
