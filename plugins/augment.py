"""Training-time augmenters: ``none``, ``basic``, ``randaugment``, ``mixup``, ``cutmix`` and
``flip_crop_cutout`` (the fast-CIFAR recipe).

They run in the input pipeline on training batches only, never at validation or in an
exported model. ``mixup`` and ``cutmix`` mix labels as well as images, so they carry
``mixes_labels = True`` (the contract in ``hookspecs.register_augmenters``).
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
    register("randaugment", randaugment, description="Keras RandAugment, magnitude searched")
    register("mixup", mixup, description="Keras MixUp: blends image pairs and their labels")
    register("cutmix", cutmix, description="Keras CutMix: pastes patches, mixes labels by area")
    register(
        "flip_crop_cutout",
        flip_crop_cutout,
        description="flip, reflect-padded random crop and cutout (fast CIFAR recipes)",
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


def randaugment(hp):
    import keras

    magnitude = hp.Float("magnitude", 0.1, 0.9, step=0.2, default=0.5)
    num_ops = hp.Int("num_ops", 1, 3, default=2)
    return keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=magnitude)


def mixup(hp):
    import keras

    layer = keras.layers.MixUp(alpha=hp.Float("alpha", 0.1, 0.4, step=0.1, default=0.2))
    layer.mixes_labels = True
    return layer


def cutmix(hp):
    import keras

    layer = keras.layers.CutMix(factor=hp.Float("alpha", 0.5, 1.0, step=0.25, default=1.0))
    layer.mixes_labels = True
    return layer


def flip_crop_cutout(hp):
    """Flip, translate by up to ``crop`` of the side with reflected borders (the same
    pixels as reflect-pad then random-crop), then blank one square of ``cutout`` x side.
    The defaults are airbench's for short training: 2 pixels of 32, no cutout."""
    crop = hp.Float("crop", 0.0625, 0.125, step=0.0625, default=0.0625)
    cutout = hp.Float("cutout", 0.0, 0.5, step=0.25, default=0.0)

    def augment(images, training=True):
        if not training:
            return images
        images = random_flip_translate(images, crop)
        return random_cutout(images, cutout) if cutout else images

    return augment


def random_flip_translate(images, share: float):
    """Mirror half the images left-right and shift each by up to ``share`` of its side,
    borders reflected: two gathers per batch, several times cheaper than Keras's
    ``RandomFlip`` + ``RandomTranslation`` (an image transform per image)."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]

    def shifted(size, flip=None):
        most = tf.cast(tf.cast(size, "float32") * share, "int32")
        index = tf.range(size)[None, :]
        if flip is not None:
            index = tf.where(flip, size - 1 - index, index)
        index = tf.abs(index + tf.random.uniform([batch, 1], -most, most + 1, dtype="int32"))
        return (size - 1) - tf.abs((size - 1) - index)  # reflect at both borders

    rows = shifted(height)
    cols = shifted(width, flip=tf.random.uniform([batch, 1]) < 0.5)
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def random_cutout(images, size: float, fill: float = 127.5):
    """Fill one random square per image, ``size`` x the image side, with mid grey."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    side_h = tf.cast(tf.cast(height, "float32") * size, "int32")
    side_w = tf.cast(tf.cast(width, "float32") * size, "int32")
    # centres anywhere in the image: squares may hang over the edge, as in Cutout
    top = tf.random.uniform([batch, 1, 1], 0, height, dtype="int32") - side_h // 2
    left = tf.random.uniform([batch, 1, 1], 0, width, dtype="int32") - side_w // 2
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return tf.where(inside[..., None], tf.cast(fill, images.dtype), images)
