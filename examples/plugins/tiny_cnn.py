"""A one-file automl plugin that adds an architecture.

automl search photos/ -p examples/plugins/tiny_cnn.py --architectures tiny_cnn
"""

from automl_core import hookimpl


@hookimpl
def register_architectures(register):
    register("tiny_cnn", tiny_cnn, description="one conv layer, for quick checks", tags=("cnn",))


def tiny_cnn(hp, input_shape, num_classes):
    import keras
    from keras import layers

    filters = hp.Int("filters", 8, 32, step=8, default=16)
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(filters, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")
