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
"""

from __future__ import annotations

import numpy as np

from automl_core.data.dataset import DatasetSplit

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
