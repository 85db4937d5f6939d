"""Test-time augmentation: average the predictions on an image and its mirror image.

Measured on the validation split for every trial; the winner keeps it inside the
saved model only when it helps, wrapped with the small layers of ``automl_core.training.layers``
(ONNX, TFLite and SavedModel exports carry them as plain operations).
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

    from automl_core.training.layers import Average, Mirror

    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    outputs = Average()(model(inputs), model(Mirror()(inputs)))
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_tta")
