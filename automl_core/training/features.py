"""Training the head alone on cached features, when everything before it is frozen.

An architecture marks where its frozen part ends by naming that layer ``FEATURES`` (a
pretrained backbone and its pooling, say). When nothing up to that layer has trainable
weights, no augmentation changes the images and no fine-tuning phase follows, each
image's features stay the same all through the trial: training the head on them is the
same computation as training the whole model, at a fraction of the cost. They are
computed once per image, in batches, and kept on disk under the cache root, keyed by the
frozen part (its layers' settings, its weights, the dtype policy) and by each image's
pixels, so a later trial of the same part on the same images (another head, a refit, the
next search) computes none. The head is made of the model's own layers: once trained,
the whole model is trained.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from automl_core.data.cache import cache_root, private_folder
from automl_core.data.dataset import DatasetSplit

FEATURES = "features"
"""The name of the layer whose output is the frozen part's features."""
FOLDER = "features"
"""Under the cache root: one folder per frozen part."""
BATCH = 64
"""Images put through the frozen part at once."""


def trained_part(model, recipe, augment, data: DatasetSplit) -> tuple:
    """What trains on what: ``(model, data)``, or the model's head and the images'
    features when its frozen part can be computed once (see the module)."""
    parts = frozen_split(model)
    if parts is None or augment is not None or recipe.fine_tune_layers:
        return model, data
    extractor, head = parts
    store = FeatureStore(cache_root() / FOLDER / identity(extractor))
    x_train, x_val = store.features(extractor, data.x_train, data.x_val)
    return head, DatasetSplit(x_train, data.y_train, x_val, data.y_val, data.class_names)


def frozen_split(model) -> tuple | None:
    """``(extractor, head)``: the models from the input to the ``FEATURES`` layer and from
    there to the output, sharing ``model``'s layers; ``None`` without such a layer or when
    anything before it trains."""
    import keras

    try:
        layer = model.get_layer(FEATURES)
    except ValueError:
        return None
    extractor = keras.Model(model.inputs, layer.output)
    if extractor.trainable_weights:
        return None
    return extractor, keras.Model(layer.output, model.output)


def identity(extractor) -> str:
    """A digest of what the extractor computes: input shape, dtype policy, each layer's
    class and settings (names left out: Keras numbers them per process) and weights."""
    import keras

    digest = hashlib.blake2b(digest_size=16)
    policy = keras.mixed_precision.global_policy().name
    digest.update(json.dumps([extractor.input_shape, policy]).encode())
    for layer in leaves(extractor):
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        digest.update(type(layer).__name__.encode())
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in extractor.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def leaves(model) -> list:
    """The layers of ``model``, nested models replaced by their own layers."""
    import keras

    found = []
    for layer in model.layers:
        found += leaves(layer) if isinstance(layer, keras.Model) else [layer]
    return found


class FeatureStore:
    """The features of one frozen part, by image digest: files of ``digests`` and
    ``features`` rows, each written whole by the trial that computed them (concurrent
    trials never write the same file; a row computed twice is the same row)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def features(self, extractor, *arrays: np.ndarray) -> list[np.ndarray]:
        """The float32 features of each image of each array, computing only those that
        no earlier trial stored; says on stderr how many were computed."""
        started = time.perf_counter()
        digests = [image_digests(images) for images in arrays]
        known = self.read()
        todo: dict[bytes, np.ndarray] = {}
        for images, keys in zip(arrays, digests, strict=True):
            for row, key in enumerate(keys):
                if key not in known and key not in todo:
                    todo[key] = images[row]
        if todo:
            known |= self.write(list(todo), compute(extractor, list(todo.values())))
        print(
            f"automl: features of {sum(map(len, digests))} images: {len(todo)} computed, "
            f"the rest from the cache ({time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
        return [np.stack([known[key] for key in keys]) for keys in digests]

    def read(self) -> dict[bytes, np.ndarray]:
        known: dict[bytes, np.ndarray] = {}
        for path in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            with np.load(path) as part:
                known |= dict(zip(map(bytes, part["digests"]), part["features"], strict=True))
        return known

    def write(self, keys: list[bytes], features: np.ndarray) -> dict[bytes, np.ndarray]:
        """Store ``features`` of the images ``keys`` in a new file; returns them by key."""
        private_folder(self.folder)
        handle, tmp = tempfile.mkstemp(".tmp", "part-", self.folder)
        with os.fdopen(handle, "wb") as file:
            digests = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
            np.savez(file, digests=digests, features=features)
        os.replace(tmp, tmp.removesuffix(".tmp") + ".npz")
        return dict(zip(keys, features, strict=True))


def image_digests(images: np.ndarray) -> list[bytes]:
    """A digest of each image's pixels."""
    return [hashlib.blake2b(np.ascontiguousarray(i), digest_size=16).digest() for i in images]


def compute(extractor, images: list[np.ndarray]) -> np.ndarray:
    """The extractor's float32 outputs for ``images``, ``BATCH`` at a time."""
    batches = [
        extractor.predict_on_batch(np.asarray(images[start : start + BATCH], dtype="float32"))
        for start in range(0, len(images), BATCH)
    ]
    return np.concatenate([np.asarray(batch, dtype="float32") for batch in batches])
