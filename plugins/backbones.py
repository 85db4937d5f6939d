"""Pretrained backbones from ``keras.applications``, each with a new head.

The model takes raw 0..255 pixels of the dataset's size: grey images are repeated to
three channels, resized to the backbone's ``image_size`` and put through the backbone's
own preprocessing, all inside the model. Weights come from:

- ``"imagenet"``: Keras's cache (``$KERAS_HOME/models``, default ``~/.keras/models``). Each
  backbone declares its files (``weights_files``: the URL Keras publishes them at, and
  the published hash where there is one); a search fetches the missing ones before its
  clock starts (``automl_core.training.weights``), and ``automl weights`` lists, fetches
  and imports them. A trial never downloads: when the file is missing it fails at once
  with one line naming the file and where to put it.
- a local weights file path (what ``backbone.save_weights`` or Keras's own file holds);
- ``"none"``: random initialisation, the whole network trained from scratch.

By default a backbone uses ImageNet weights when the file is in Keras's cache, otherwise
random initialisation (the search warns on the console, offline or when a download
fails), so a search works on a machine without internet. Use another file by registering
your own name: ``register("my_mnv2", backbone("mobilenet_v2", weights="mnv2.weights.h5"))``.
With weights loaded, the backbone is frozen under a new head (dropout, dense softmax); the
recipe may then fine-tune its top layers at a lower rate.
The pooled backbone output is the layer ``features``: trained without augmentation or
fine-tuning, the head trains on features computed once (``automl_core.training.features``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automl_core import hookimpl
from automl_core.errors import UsageError
from automl_core.training.features import FEATURES
from automl_core.training.weights import WeightsFile, models_dir

IMAGE_SIZES = [96, 128, 160, 192, 224]
"""Sides the input is resized to; 96 is the CPU-friendly default."""
PUBLISHED = "https://storage.googleapis.com/tensorflow/keras-applications/"
"""Where ``keras.applications`` publishes most of its weights files."""


@dataclass(frozen=True)
class Backbone:
    """How to build one ``keras.applications`` model and find its ImageNet file."""

    application: str
    """The constructor's name in ``keras.applications``."""
    weights_file: str
    """The no-top ImageNet file in Keras's cache; ``{size}`` is the input side."""
    weights_folder: str
    """The URL of the folder Keras publishes it in."""
    weights_hash: str | None
    """Its published md5 (``keras/src/applications``); ``None``: Keras publishes none."""
    cost: float
    """Training time at the defaults relative to ``baseline_cnn`` (benchmarks/zoo.py)."""
    rescale: bool = False
    """Scale pixels to -1..1 in front (for models without built-in preprocessing)."""
    options: tuple[tuple[str, object], ...] = ()


BACKBONES = {
    "mobilenet_v2": Backbone(
        "MobileNetV2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        PUBLISHED + "mobilenet_v2/",
        None,
        cost=47,
        rescale=True,
    ),
    "mobilenet_v3_small": Backbone(
        "MobileNetV3Small",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        PUBLISHED + "mobilenet_v3/",
        "d3e8ec802a04aa4fc771ee12a9a9b836",
        cost=21,
        options=(("include_preprocessing", True),),
    ),
    "mobilenet_v3_large": Backbone(
        "MobileNetV3Large",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        PUBLISHED + "mobilenet_v3/",
        "07fb09a5933dd0c8eaafa16978110389",
        cost=47,
        options=(("include_preprocessing", True),),
    ),
    "efficientnet_b0": Backbone(
        "EfficientNetB0",
        "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        "50bc09e76180e00e4465e1a485ddc09d",
        cost=80,
    ),
    "efficientnet_v2_b0": Backbone(
        "EfficientNetV2B0",
        "efficientnetv2-b0_notop.h5",
        PUBLISHED + "efficientnet_v2/",
        "893217f2bb855e2983157299931e43ff",
        cost=70,
        options=(("include_preprocessing", True),),
    ),
    "resnet50_v2": Backbone(
        "ResNet50V2",
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        PUBLISHED + "resnet/",
        "fac2f116257151a9d068a22e544a4917",
        cost=150,
        rescale=True,
    ),
}


@hookimpl
def register_architectures(register):
    for name, spec in BACKBONES.items():
        register(
            name,
            backbone(name),
            description=f"keras.applications {spec.application}, new head (transfer learning)",
            tags=("pretrained", "backbone"),
            cost=spec.cost,
            # it resizes its input itself: the final run's size is chosen from these
            sizes={"image_size": size_costs(IMAGE_SIZES)},
            mixed_precision=True,
            augmenter="basic",
            weights=weights_files(name),
        )


def size_costs(sizes: list[int]) -> dict[int, float]:
    """Each input side's cost relative to the smallest: its pixels."""
    return {size: (size / sizes[0]) ** 2 for size in sizes}


def backbone(name: str, weights: str | None = None) -> Callable:
    """An architecture factory for backbone ``name`` with ``weights`` ("imagenet", a file
    path or "none"; default: ImageNet when cached, else "none")."""

    def factory(hp, input_shape, num_classes):
        return build(name, hp, input_shape, num_classes, weights)

    factory.__name__ = name
    factory.__doc__ = f"{BACKBONES[name].application} with a new classification head."
    return factory


def build(
    name: str,
    hp,
    input_shape,
    num_classes: int,
    weights: str | None = None,
    sizes: list[int] = IMAGE_SIZES,
    hidden: bool = False,
):
    """The whole model: raw pixels -> resize + preprocessing -> backbone -> pooled
    ``features`` -> head, at one of ``sizes``; with ``hidden``, the head may have a
    hidden layer (``head_units``, 0: none)."""
    import keras
    from keras import layers

    size = hp.Choice("image_size", sizes, default=sizes[0])
    weights = hp.Fixed("weights", weights or default_weights(name, size))
    dropout = hp.Float("head_dropout", 0.0, 0.5, step=0.1, default=0.2)
    units = hp.Choice("head_units", [0, 256], default=0) if hidden else 0
    hp.Float("learning_rate", 1e-4, 3e-3, sampling="log", default=1e-3)

    inputs = keras.Input(shape=input_shape)
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate()([x, x, x])
    x = layers.Resizing(size, size)(x)
    if BACKBONES[name].rescale:
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    base = backbone_model(name, size, weights)
    pretrained = weights != "none"
    base.trainable = not pretrained  # a random backbone must learn; a pretrained one is kept
    x = base(x, training=False) if pretrained else base(x)
    x = layers.GlobalAveragePooling2D(name=FEATURES)(x)
    if units:
        x = layers.Dense(units, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(int(num_classes), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def backbone_model(name: str, size: int, weights: str = "none"):
    """The headless ``keras.applications`` model for ``size`` x ``size`` x 3 inputs."""
    import keras

    spec = BACKBONES[name]
    constructor = getattr(keras.applications, spec.application)
    return constructor(
        include_top=False,
        weights=_weights_path(name, size, weights),
        input_shape=(size, size, 3),
        **dict(spec.options),
    )


def imagenet_file(name: str, size: int) -> Path:
    """Where Keras's cache keeps backbone ``name``'s no-top ImageNet weights."""
    return models_dir() / BACKBONES[name].weights_file.format(size=size)


def weights_files(name: str) -> tuple[WeightsFile, ...]:
    """Backbone ``name``'s ImageNet files: one per image size where Keras publishes one
    per size (MobileNetV2), else one that fits every size."""
    spec = BACKBONES[name]
    sizes = IMAGE_SIZES if "{size}" in spec.weights_file else IMAGE_SIZES[:1]
    return tuple(
        WeightsFile(
            imagenet_file(name, size).name,
            spec.weights_folder + imagenet_file(name, size).name,
            spec.weights_hash,
            load=functools.partial(_load, name, size),
        )
        for size in sizes
    )


def _load(name: str, size: int, path: Path):
    """Backbone ``name`` at ``size`` with the weights in ``path`` (an error if they do
    not fit it)."""
    return backbone_model(name, size, str(path))


def default_weights(name: str, size: int) -> str:
    """``imagenet`` when its file is cached, else ``none`` (a search says so on the console
    before its clock starts: ``automl_core.training.weights.fetch_for_search``)."""
    return "imagenet" if imagenet_file(name, size).is_file() else "none"


def _weights_path(name: str, size: int, weights: str) -> str | None:
    """The file to load (never a download), or None for random initialisation."""
    if weights == "none":
        return None
    path = imagenet_file(name, size) if weights == "imagenet" else Path(weights).expanduser()
    if not path.is_file():
        where = f"put {path.name} in {path.parent}" if weights == "imagenet" else "check the path"
        raise UsageError(f"{name}: weights file {path} not found ({where}, or use weights none)")
    return str(path)
