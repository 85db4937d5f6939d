"""``airbench``: a fast small-image net after Keller Jordan's airbench94 recipe.

A frozen first layer of 2x2 patch whitening computed from the training images
(``prepare``, called once before training), then three groups of conv -> max-pool ->
batch norm -> activation -> conv -> batch norm -> activation, a global max-pool and a linear head
with a fixed temperature. Its recipe defaults are the recipe's too: Nesterov SGD, a one-cycle
schedule, label smoothing 0.2, a moving average of the weights, and (registered)
flip + 2-pixel translation; flip test-time averaging is the engine's, kept for a winner
when it helps. ``width`` 32 (groups 32/128/128) suits short budgets; 64 is airbench94's
64/256/256, about 4x the compute.
"""

from __future__ import annotations

from automl_core import hookimpl

WHITEN = "whiten"
"""The name of the patch-whitening layer ``prepare`` sets."""
CHUNK = 100
"""Images whose patches ``prepare`` holds in memory at once."""
PATCH = 2
"""Side of the whitened patches."""
EPSILON = 5e-4
"""Added to the patch covariance's eigenvalues, so near-constant directions stay bounded."""
TEMPERATURE = 1 / 9
"""Logits are scaled by this: max-pooled features are large, and smoothed labels want
soft outputs from the start."""


@hookimpl
def register_architectures(register):
    register(
        "airbench",
        airbench,
        description="whitened 3-group conv net for small images (airbench94 recipe)",
        tags=("cnn", "from-scratch"),
        cost=8,  # per epoch, baseline_cnn = 1: about twice resnet's on 2 CPU cores
        sizes={"width": {32: 1.0, 64: 4.0}},  # 64: airbench94's 64/256/256, 4x the compute
        preferred_up_to=64,  # the zoo's best net for small images: tried first on them
        mixed_precision=True,
        augmenter="flip_crop_cutout",
        prepare=whiten_first_layer,
    )


def airbench(hp, input_shape, num_classes):
    import keras
    from keras import layers

    width = hp.Choice("width", [32, 64], default=32)
    # airbench94 uses GELU; ReLU trains 28% faster in bfloat16 on a CPU (1,309 against
    # 1,022 images/s, 2-core AMD EPYC, batch 512) and 5% slower in float32
    activation = hp.Choice("activation", ["relu", "gelu"], default="relu")
    hp.Choice("optimizer", ["sgd"], default="sgd")
    hp.Float("learning_rate", 0.05, 0.8, sampling="log", default=0.2)
    hp.Float("weight_decay", 1e-3, 2e-2, sampling="log", default=5e-3)
    hp.Float("label_smoothing", 0.0, 0.2, step=0.1, default=0.2)
    hp.Choice("schedule", ["onecycle", "cosine"], default="onecycle")
    hp.Choice("ema", [0.0, 0.9, 0.99], default=0.9)

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    patch_dims = PATCH * PATCH * input_shape[-1]
    # each whitened direction twice, positive and negative, so the activation keeps both halves
    x = layers.Conv2D(2 * patch_dims, PATCH, name=WHITEN, trainable=False)(x)
    x = layers.Activation(activation)(x)
    for filters in (width, 4 * width, 4 * width):
        x = _conv_bn_act(x, filters, activation, pool=True)
        x = _conv_bn_act(x, filters, activation)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(int(num_classes), use_bias=False)(x)
    x = layers.Rescaling(TEMPERATURE)(x)
    outputs = layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="airbench")


def _conv_bn_act(x, filters: int, activation: str, pool: bool = False):
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    if pool:
        x = layers.MaxPooling2D()(x)
    x = layers.BatchNormalization(momentum=0.6, scale=False)(x)
    return layers.Activation(activation)(x)


def whiten_first_layer(model, images) -> None:
    """Set the frozen ``whiten`` layer so that its outputs on ``images`` (raw pixels) are
    decorrelated, zero-mean and of unit variance."""
    import keras
    import numpy as np

    layer = model.get_layer(WHITEN)
    to_layer = keras.Model(model.input, layer.input)
    dims = layer.kernel.shape[2] * PATCH * PATCH
    total, outer, count = np.zeros(dims), np.zeros((dims, dims)), 0
    for start in range(0, len(images), CHUNK):  # patches of all images at once: too big
        pixels = keras.ops.convert_to_numpy(to_layer(images[start : start + CHUNK]))
        patches = patch_vectors(pixels.astype("float64"))
        total, outer, count = (
            total + patches.sum(0),
            outer + patches.T @ patches,
            count + len(patches),
        )
    mean = total / count
    values, vectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    basis = vectors / np.sqrt(np.maximum(values, 0.0) + EPSILON)
    kernel = np.concatenate([basis, -basis], axis=1)
    layer.kernel.assign(kernel.reshape(layer.kernel.shape).astype("float32"))
    layer.bias.assign((-mean @ kernel).astype("float32"))


def patch_vectors(pixels):
    """Every ``PATCH`` x ``PATCH`` patch of NHWC ``pixels`` as a row, in the order of a
    ``Conv2D`` kernel's (row, column, channel) axes."""
    import numpy as np

    windows = np.lib.stride_tricks.sliding_window_view(pixels, (PATCH, PATCH), axis=(1, 2))
    # (n, h', w', channels, row, column) -> rows of (row, column, channel)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, PATCH * PATCH * pixels.shape[-1])
