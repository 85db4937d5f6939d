"""Embedding candidates: a pretrained backbone kept frozen, a linear or small MLP head.

``<backbone>_embedding`` (``mobilenet_v2_embedding``, ...) is the backbone of
``plugins/backbones.py`` with its ImageNet weights, never fine-tuned, trained without
augmentation: its features never change, so each image's are computed once and cached,
and the head trains on them in seconds (``automl_core.training.features``). On a CPU it
is often the best model a short budget buys, and its score says which backbone is worth
fine-tuning (``guides=``: of the backbones with weights, a search screens the one whose
embedding scored best). It declares its backbone's weights files and ``requires_weights``: a search
fetches them before its clock starts and leaves the candidate out when none is there
(offline, no cached file), since random features are worth nothing. It is offered at the
sizes whose file is cached (all of them when none is yet). It comes first in a search's
warm start, whatever the image size, screened at the smallest, middle and largest of
those sizes (``variants=``): a frozen backbone's features differ at each input side, and
which side suits its weights (those they were trained at, or near) is measured, not
assumed; the final run keeps the side chosen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from automl_core import hookimpl
from automl_plugins.backbones import (
    BACKBONES,
    IMAGE_SIZES,
    build,
    imagenet_file,
    weights_files,
)

SUFFIX = "_embedding"


@hookimpl
def register_architectures(register):
    for name, spec in BACKBONES.items():
        sizes = cached_sizes(name) or IMAGE_SIZES
        register(
            name + SUFFIX,
            embedding(name, sizes),
            description=f"frozen ImageNet {spec.application}, linear/MLP head on cached features",
            tags=("pretrained", "embedding"),
            cost=1,  # after one pass computing the features, an epoch costs next to nothing
            variants={"image_size": sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]})},
            preferred_up_to=math.inf,
            mixed_precision=True,
            augmenter="none",
            weights=weights_files(name),
            requires_weights=True,
            guides=name,
        )


def cached_sizes(name: str) -> list[int]:
    """The input sides whose ImageNet weights file for backbone ``name`` is cached."""
    return [size for size in IMAGE_SIZES if imagenet_file(name, size).is_file()]


def embedding(name: str, sizes: list[int]) -> Callable:
    """An architecture factory: backbone ``name`` frozen with ImageNet weights at one of
    ``sizes``, and a head that may have a hidden layer."""

    def factory(hp, input_shape, num_classes):
        hp.Fixed("fine_tune_layers", 0)  # the recipe's: the features never change
        return build(name, hp, input_shape, num_classes, "imagenet", sizes, hidden=True)

    factory.__name__ = name + SUFFIX
    factory.__doc__ = f"Frozen {BACKBONES[name].application} features with a new head."
    return factory
