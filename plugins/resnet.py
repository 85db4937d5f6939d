"""``resnet``: a small residual net for small images, after the fast CIFAR-10 recipes.

The layout follows what the airbench / hlb-CIFAR10 family found trains fastest: a tiny
2x2 stem, then three groups of conv -> max-pool -> batch norm -> ReLU, each followed by
residual conv units, batch norm with fast statistics (momentum 0.6) and no learnable
scale, convs without biases, a global max-pool head. Its recipe defaults are theirs too:
label smoothing 0.2 and a one-cycle schedule. Widths are sized for a CPU: the default is
about 0.3M parameters, roughly 5x the baseline CNN's compute.
"""

from __future__ import annotations

from automl_core import hookimpl

SMALL_INPUT = 48
"""Inputs up to this side keep full resolution in the stem; larger ones are halved."""


@hookimpl
def register_architectures(register):
    register(
        "resnet",
        resnet,
        description="residual net for small images (airbench-style), trained from scratch",
        tags=("cnn", "residual", "from-scratch"),
        cost=4,  # seconds per epoch against baseline_cnn: 31.4 / 7.8 on CIFAR-10, bfloat16
        mixed_precision=True,
        augmenter="flip_crop_cutout",
    )


def resnet(hp, input_shape, num_classes):
    import keras
    from keras import layers

    width = hp.Choice("width", [16, 32, 48, 64], default=32)
    depth = hp.Int("depth", 0, 2, default=1)
    dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
    hp.Float("learning_rate", 5e-4, 5e-3, sampling="log", default=2e-3)
    hp.Float("weight_decay", 1e-3, 1e-1, sampling="log", default=5e-2)
    hp.Float("label_smoothing", 0.0, 0.2, step=0.1, default=0.2)
    hp.Choice("schedule", ["onecycle", "cosine"], default="onecycle")

    small = min(input_shape[:2]) <= SMALL_INPUT
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(width, 2 if small else 3, strides=1 if small else 2, padding="same")(x)
    x = layers.Activation("relu")(x)
    for multiple in (1, 2, 4):
        x = _group(x, width * multiple, depth)
    x = layers.GlobalMaxPooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(int(num_classes), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet")


def _group(x, filters: int, depth: int):
    """conv -> pool -> BN -> ReLU, then ``depth`` residual conv units at that width."""
    from keras import layers

    x = _conv_bn_relu(x, filters, pool=True)
    for _ in range(depth):
        x = layers.Add()([x, _conv_bn_relu(x, filters)])
    return x


def _conv_bn_relu(x, filters: int, pool: bool = False):
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    if pool:
        x = layers.MaxPooling2D()(x)
    x = layers.BatchNormalization(momentum=0.6, scale=False)(x)
    return layers.Activation("relu")(x)
