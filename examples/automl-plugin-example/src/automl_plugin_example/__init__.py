"""An installable automl plugin: registers the ``mini_mlp`` architecture."""

from automl_core import hookimpl


@hookimpl
def register_architectures(register):
    register(
        "mini_mlp",
        mini_mlp,
        description="a small multilayer perceptron on downscaled pixels",
        tags=("mlp",),
    )


def mini_mlp(hp, input_shape, num_classes):
    """Raw pixels in, softmax out: rescale, pool, flatten, one hidden layer."""
    import keras
    from keras import layers

    units = hp.Int("units", 32, 128, step=32, default=64)
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(units, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mini_mlp")
