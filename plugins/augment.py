"""Training-time augmenters: ``none`` and ``basic`` (flip, rotation, zoom).

They run in the input pipeline on training batches only, never at validation or in an
exported model.
"""

from __future__ import annotations

from automl_core import hookimpl


@hookimpl
def register_augmenters(register):
    register("none", no_augmentation, description="no augmentation")
    register(
        "basic",
        basic_augmentation,
        description="random horizontal flip, rotation and zoom (ImageDataGenerator style)",
    )


def no_augmentation(hp):
    return None


def basic_augmentation(hp):
    import keras
    from keras import layers

    rotation = hp.Float("rotation", 0.0, 0.15, step=0.05, default=0.05)
    zoom = hp.Float("zoom", 0.0, 0.2, step=0.1, default=0.1)
    steps = [layers.RandomFlip("horizontal")]
    if rotation:
        steps.append(layers.RandomRotation(rotation, fill_mode="reflect"))
    if zoom:
        steps.append(layers.RandomZoom(zoom, fill_mode="reflect"))
    return keras.Sequential(steps, name="basic_augmentation")
