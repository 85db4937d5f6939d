"""Keras layers automl puts into saved models. Import this module before loading a
``.keras`` winner outside automl (``automl predict`` and ``automl_core.load`` do)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="automl")
class Mirror(keras.layers.Layer):
    """Flip images left to right (axis 2 of NHWC)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="automl")
class Average(keras.layers.Layer):
    """The mean of two predictions (on an image and on its mirror)."""

    def call(self, plain, mirrored):
        return (plain + mirrored) / 2

    def compute_output_shape(self, plain_shape, mirrored_shape):
        return plain_shape


def load_model(path, **kwargs) -> keras.Model:
    """Load a ``.keras`` file that may hold these layers; Keras's ``safe_mode`` stays on."""
    return keras.models.load_model(path, safe_mode=True, **kwargs)
