"""Test-time augmentation: average the predictions on an image and its mirror image.

Measured on the validation split for every trial; the winner keeps it inside the saved
model only when it helps. The mirror is made of stock Keras layers (a fixed permutation
matrix applied along the width), so the model loads in plain Keras, without automl, and
every exporter carries it as plain operations.
"""

from __future__ import annotations

import numpy as np


def flip_predictions(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``model``'s probabilities on each image and on its mirror image; ``dataset``
    yields (images, labels)."""
    import tensorflow as tf

    plain = model.predict(dataset, verbose=0)
    mirrored = model.predict(dataset.map(lambda x, y: (tf.reverse(x, axis=[2]), y)), verbose=0)
    return plain, mirrored


def with_flip_averaging(model):
    """``model`` wrapped so it returns the mean of its outputs on the image and its mirror."""
    import keras

    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    outputs = keras.layers.Average(name="flip_average")([model(inputs), model(mirror(inputs))])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_tta")


def mirror(images):
    """``images`` (NHWC, a known width) flipped left to right: the width axis moved last
    and multiplied by the reversed identity matrix (exact: each output is one input
    times one), then moved back."""
    from keras import layers

    width = images.shape[2]
    x = layers.Permute((1, 3, 2), name="width_last")(images)
    flip = layers.Dense(width, use_bias=False, trainable=False, name="mirror")
    x = flip(x)
    flip.set_weights([np.eye(width, dtype="float32")[::-1]])
    return layers.Permute((1, 3, 2), name="width_back")(x)
