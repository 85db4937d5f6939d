"""The training image size: smaller than the decoded images when the budget asks for it.

Images are decoded once, at the folder's typical size (``--image-size`` or at most
``MAX_AUTO_IMAGE_SIZE``). When that is larger than the smallest training size, each
architecture that does not resize its input itself gets an ``image_size`` hyperparameter:
the decoded size (its default) or a smaller one from ``STEPS``. A trial at a smaller size
resizes its arrays once, trains on them, and ships its model behind the same resizing
layers, so the saved model still takes the decoded size and resizes the way it trained.

Resizing halves the image with bilinear steps while it can (at exactly half, a bilinear
sample is the mean of a 2x2 block, so nothing aliases) and makes one last bilinear step
to the size: stock Keras layers that every exporter carries as plain operations.

The winner goes one step further out (``with_any_input_size``): it takes images of any
height and width and squashes them to the decoded size inside the model, the way the
decoder does, so a deployed model needs no resizing code.
"""

from __future__ import annotations

import numpy as np

from automl_core.data.dataset import DatasetSplit
from automl_core.data.decode import REDUCING_GAP

IMAGE_SIZE = "image_size"
STEPS = (32, 64, 96, 128, 160, 192, 224)
"""Training sizes offered below the decoded size (which is always offered too)."""
SCREEN_SIZE = 64
"""Candidates are ranked at the smallest offered size from this one up (cheap before
expensive: resolution is a fidelity, as in progressive resizing); the final run is sized
to the budget."""
RESIZE_BATCH = 512
"""Images resized at once when a trial shrinks its arrays."""


def offered_sizes(side: int, fixed: bool = False) -> list[int]:
    """The training sizes for images decoded at ``side``, smallest first; empty when
    there is no choice (``fixed``: the user set ``--image-size``, or ``side`` is already
    the smallest step)."""
    sizes = [size for size in STEPS if size < side] + [side]
    return [] if fixed or len(sizes) < 2 else sizes


def screen_size(sizes: list[int]) -> int:
    """The size candidates are ranked at."""
    return next((size for size in sizes if size >= SCREEN_SIZE), sizes[-1])


def size_costs(sizes: list[int]) -> dict[int, float]:
    """Each size's training cost relative to the decoded (largest) size: its pixels."""
    return {size: (size / sizes[-1]) ** 2 for size in sizes}


def declare(hp, sizes: list[int] | None) -> int | None:
    """Declare the ``image_size`` hyperparameter (in the architecture's scope) and return
    its value; ``None`` when there is no choice."""
    if not sizes:
        return None
    return int(hp.Choice(IMAGE_SIZE, sizes, default=sizes[-1]))


def resizing_layers(side: int, size: int) -> list:
    """Keras layers taking ``side``-pixel images to ``size`` pixels (none when equal)."""
    from keras import layers

    steps = []
    while side // 2 >= size:
        side //= 2
        steps.append(side)
    if side != size:
        steps.append(size)
    return [layers.Resizing(step, step, name=f"resize_{step}") for step in steps]


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``images`` (n, side, side, c) at ``size`` x ``size``, through the same
    layers that the shipped model puts in front of the network."""
    import keras

    steps = resizing_layers(images.shape[1], size)
    out = np.empty((len(images), size, size, images.shape[-1]), dtype=np.uint8)
    for start in range(0, len(images), RESIZE_BATCH):
        batch = np.asarray(images[start : start + RESIZE_BATCH], dtype="float32")
        for layer in steps:
            batch = layer(batch)
        batch = keras.ops.convert_to_numpy(batch)
        out[start : start + len(batch)] = np.clip(np.rint(batch), 0, 255)
    return out


def resized(data: DatasetSplit, size: int) -> DatasetSplit:
    """``data`` with every image at ``size`` x ``size``."""
    return DatasetSplit(
        resize_images(data.x_train, size),
        data.y_train,
        resize_images(data.x_val, size),
        data.y_val,
        data.class_names,
    )


def with_input_resizing(model, input_shape: tuple[int, int, int]):
    """``model`` (built for smaller images) behind the layers that resize
    ``input_shape`` images to its input size; ``model`` itself when they match."""
    import keras

    steps = resizing_layers(input_shape[0], model.input_shape[1])
    if not steps:
        return model
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in steps:
        x = layer(x)
    return keras.Model(inputs, model(x), name=model.name)


def with_any_input_size(model):
    """``model`` (square input of the decoded size) behind ``squash``: it takes images of
    any height and width, and images of the decoded size pass through unchanged."""
    import keras

    side = model.input_shape[1]
    inputs = keras.Input(shape=(None, None, model.input_shape[-1]), name="images")
    return keras.Model(inputs, model(squash(inputs, side)), name=model.name)


def at_decoded_size(model):
    """The network inside a ``with_any_input_size`` model, which takes exactly the decoded
    size; ``model`` itself when its input size is fixed already."""
    return model if model.input_shape[1] is not None else model.layers[-1]


def squash(images, side: int):
    """``images`` (NHWC, any height and width, raw pixels) squashed to ``side`` x ``side``
    as ``decode_image`` resizes them: Pillow's bilinear filter (a triangle as wide as the
    scale when shrinking, so nothing aliases) after its box reduction by a whole factor
    (``REDUCING_GAP``), in floating point (the decoder rounds to whole values; so images
    of the size pass through exactly, fractional or not). Each axis is one weight matrix
    computed from the image's size with Keras operations, so the graph is arithmetic and
    two matrix products (their cost grows with the pixels times ``side``), which ONNX and
    LiteRT carry with dynamic height and width (the antialiased ``Resizing`` layer's
    ScaleAndTranslate converts to neither)."""
    from keras import ops

    rows = _weights(ops.ones_like(images[:1, :, 0, :1]), side)  # (1, height, side)
    columns = _weights(ops.ones_like(images[:1, 0, :, :1]), side)  # (1, width, side)
    x = ops.matmul(ops.transpose(images, (0, 3, 2, 1)), rows)  # (n, channels, width, side)
    x = ops.matmul(ops.transpose(x, (0, 1, 3, 2)), columns)  # (n, channels, side, side)
    return ops.transpose(x, (0, 2, 3, 1))


def _weights(ones, side: int):
    """Pillow's weights along one axis of ``n`` pixels, from ``ones`` (1, n, 1): a
    (1, n, side) matrix whose columns each sum to 1."""
    from keras import ops

    index = ops.cumsum(ones, axis=1) - 1.0
    n = ops.sum(ones, axis=1, keepdims=True)
    factor = ops.maximum(ops.floor(n / (side * REDUCING_GAP)), 1.0)  # Image.reduce's
    block = ops.floor(index / factor)
    block_pixels = ops.minimum(factor, n - block * factor)  # the last block may be short
    scale = n / (factor * side)  # reduced pixels per output pixel
    centre = scale * (np.arange(side, dtype="float32") + 0.5)
    weights = ops.relu(1.0 - ops.abs(block + 0.5 - centre) / ops.maximum(scale, 1.0))
    weights = weights / block_pixels
    return weights / ops.sum(weights, axis=1, keepdims=True)
