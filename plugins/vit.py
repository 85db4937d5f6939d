"""``vit``: a small Vision Transformer for small data sets.

Patch embedding (a strided conv), a learnable position embedding, pre-norm transformer
blocks (depth, heads, width and MLP ratio are hyperparameters) and a mean-pooled head.
For small data it defaults to shifted-patch tokenization (Lee et al. 2021, "Vision
Transformer for Small-Size Datasets"): each patch also sees its four diagonal
neighbours' pixels, giving the tokens the locality a CNN has for free. Built only from
Keras layers and ops, so a saved model loads without this module.
"""

from __future__ import annotations

from automl_core import hookimpl


@hookimpl
def register_architectures(register):
    register(
        "vit",
        vit,
        description="small Vision Transformer, shifted-patch tokens, for small data",
        tags=("transformer", "from-scratch"),
        cost=15,  # seconds per epoch against baseline_cnn: 116 / 7.8 on CIFAR-10, bfloat16
        mixed_precision=True,
        augmenter="flip_crop_cutout",
    )


def vit(hp, input_shape, num_classes):
    import keras
    from keras import layers, ops

    grid = hp.Choice("tokens_per_side", [4, 8], default=8)
    width = hp.Choice("width", [64, 96, 128, 192], default=96)
    depth = hp.Int("depth", 2, 8, step=2, default=4)
    heads = hp.Choice("heads", [2, 4, 8], default=4)
    mlp_ratio = hp.Choice("mlp_ratio", [2, 4], default=2)
    dropout = hp.Float("dropout", 0.0, 0.2, step=0.1, default=0.1)
    shifted = hp.Boolean("shifted_patches", default=True)
    hp.Float("learning_rate", 3e-4, 3e-3, sampling="log", default=1e-3)
    hp.Float("weight_decay", 1e-3, 1e-1, sampling="log", default=5e-2)
    hp.Float("label_smoothing", 0.0, 0.2, step=0.1, default=0.1)
    hp.Float("warmup", 0.0, 0.2, step=0.05, default=0.1)

    patch = max(1, min(input_shape[:2]) // grid)
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    if shifted:
        x = shifted_patches(x, max(1, patch // 2))
    x = layers.Conv2D(width, patch, strides=patch)(x)
    x = layers.Reshape((-1, width))(x)
    x = layers.LayerNormalization()(x)
    tokens = (input_shape[0] // patch) * (input_shape[1] // patch)
    positions = ops.cast(ops.cumsum(ops.ones_like(x[..., 0]), axis=1) - 1, "int32")
    x = layers.Add()([x, layers.Embedding(tokens, width)(positions)])
    x = layers.Dropout(dropout)(x)
    for _ in range(depth):
        x = _block(x, width, heads, mlp_ratio, dropout)
    x = layers.LayerNormalization()(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(int(num_classes), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vit")


def shifted_patches(images, shift: int):
    """The image and its four diagonal shifts by ``shift`` pixels, stacked as channels."""
    from keras import layers

    views = [images]
    for dy in (-shift, shift):
        for dx in (-shift, shift):
            pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)))
            crop = ((max(-dy, 0), max(dy, 0)), (max(-dx, 0), max(dx, 0)))
            views.append(layers.Cropping2D(crop)(layers.ZeroPadding2D(pad)(images)))
    return layers.Concatenate()(views)


def _block(x, width: int, heads: int, mlp_ratio: int, dropout: float):
    """Pre-norm transformer block: self-attention then MLP, each with a residual."""
    from keras import layers

    y = layers.LayerNormalization()(x)
    y = layers.MultiHeadAttention(heads, width // heads, dropout=dropout)(y, y)
    x = layers.Add()([x, y])
    y = layers.LayerNormalization()(x)
    y = layers.Dense(width * mlp_ratio, activation="gelu")(y)
    y = layers.Dropout(dropout)(y)
    y = layers.Dense(width)(y)
    return layers.Add()([x, y])
