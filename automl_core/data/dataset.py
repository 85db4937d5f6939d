"""Decoded image data and the seeded stratified split, saved for trial processes to map."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl_core.errors import UsageError

MAX_AUTO_IMAGE_SIZE = 128
"""The largest side chosen when ``--image-size`` is not given (CPU-friendly)."""

SUBSETS = ("train", "val", "test")
"""Predefined subsets an image can belong to; ``ImageData.subset`` holds indices into it."""
UNASSIGNED, TRAIN, VAL, TEST = -1, 0, 1, 2
DEFAULT_VAL_SPLIT = 0.2
MAX_DEFAULT_VAL = 5000
FOLDS = 5
"""Below ``MAX_FOLD_IMAGES`` images the split is the first of this many stratified folds:
the validation images are fold 0, and the training images are dealt into the others."""
MAX_FOLD_IMAGES = 3000
"""Up to this many images, one validation split is a few hundred images or fewer: a few
points of accuracy are noise, and candidates are compared on several folds."""


@dataclass
class ImageData:
    """What a dataset loader returns: every usable image, decoded once."""

    images: np.ndarray
    """uint8, shape (n, size, size, 3)."""
    labels: np.ndarray
    """int32 class indices, shape (n,)."""
    class_names: list[str]
    source: str
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Files that could not be used: ``{"path": ..., "reason": ...}``."""
    cache: str | None = None
    """Where the decoded arrays live on disk, if the loader caches them."""
    subset: np.ndarray | None = None
    """int8 per image: ``UNASSIGNED`` or an index into ``SUBSETS`` (train/val/test layouts)."""
    layout: str = "class folders"
    cache_stats: dict[str, int] = field(default_factory=dict)
    """What loading cost: ``{"decoded": ..., "reused": ...}`` images."""
    warnings: list[str] = field(default_factory=list)
    """How the source was read that a user should know (folders or classes left out)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])

    def summary(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {
            "source": self.source,
            "classes": self.class_names,
            "counts": {n: int(c) for n, c in zip(self.class_names, counts, strict=True)},
            "images": len(self.labels),
            "image_shape": list(self.image_shape),
            "layout": self.layout,
            "subsets": self.subset_counts(),
            "skipped": self.skipped,
            "cache": self.cache,
            "cache_stats": self.cache_stats,
            "warnings": self.warnings,
        }

    def subset_counts(self) -> dict[str, int]:
        """Images per predefined subset; empty when the tool does the split."""
        if self.subset is None:
            return {}
        return {name: int(np.sum(self.subset == i)) for i, name in enumerate(SUBSETS)}


@dataclass
class DatasetSplit:
    """The train / validation arrays a trial reads."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    folds: np.ndarray | None = None
    """int8 per training image: the fold (1 to ``fold_count - 1``) it validates in; the
    validation images are fold 0. ``None``: a single split."""

    @property
    def fold_count(self) -> int:
        return 1 if self.folds is None else int(self.folds.max()) + 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_training_images(self, count: int) -> DatasetSplit:
        """The first ``count`` training images (the split shuffled them): a slice that a
        short screening trial trains on."""
        return DatasetSplit(
            self.x_train[:count], self.y_train[:count], self.x_val, self.y_val, self.class_names
        )

    def fold(self, fold: int) -> DatasetSplit:
        """Validate on fold ``fold`` and train on every other image, shuffled (fold 0:
        this split itself)."""
        if fold == 0:
            return self
        if not 0 < fold < self.fold_count:
            raise ValueError(f"fold {fold} of a split into {self.fold_count} fold(s)")
        own = self.folds == fold
        x = np.concatenate([self.x_train[~own], self.x_val])
        y = np.concatenate([self.y_train[~own], self.y_val])
        order = np.random.default_rng(fold).permutation(len(y))
        return DatasetSplit(
            x[order], y[order], self.x_train[own], self.y_train[own], self.class_names
        )

    def with_validation_in_training(self) -> DatasetSplit:
        """Train on every image (a refit); the validation arrays stay as they are."""
        return DatasetSplit(
            np.concatenate([self.x_train, self.x_val]),
            np.concatenate([self.y_train, self.y_val]),
            self.x_val,
            self.y_val,
            self.class_names,
        )


def split(data: ImageData, val_split: float | None, seed: int) -> DatasetSplit:
    """Train / validation arrays: the folder's own ``val/`` if it has one, else a seeded
    stratified split of every class in the same proportion (by default 0.2, holding out
    at most ``MAX_DEFAULT_VAL`` images), the first of ``FOLDS`` folds up to
    ``MAX_FOLD_IMAGES`` images. Test images never train."""
    if val_split is None:
        val_split = default_val_split(int(np.sum(_subsets(data) <= TRAIN)))
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {val_split}")
    rng = np.random.default_rng(seed)
    subset = _subsets(data)
    pool = subset <= TRAIN
    if np.any(subset == VAL):
        train, val = np.flatnonzero(pool), np.flatnonzero(subset == VAL)
        for label, name in enumerate(data.class_names):
            if not np.any(data.labels[train] == label):
                raise UsageError(
                    f"class {name!r} has no training images: add some to its train/ folder "
                    "or remove the class"
                )
        train = rng.permutation(train)
        folds = None
    else:
        train, val = _stratified(data, np.flatnonzero(pool), val_split, rng)
        few = len(train) + len(val) <= MAX_FOLD_IMAGES
        folds = _folds(data.labels[train], seed) if few else None
    return DatasetSplit(
        data.images[train],
        data.labels[train],
        data.images[val],
        data.labels[val],
        list(data.class_names),
        folds,
    )


def _folds(labels: np.ndarray, seed: int) -> np.ndarray | None:
    """Deal the training images of each class in turn into folds 1 to ``FOLDS - 1``
    (its own generator: the split stays what it is without folds); ``None`` when a
    class has too few images for every fold to hold one."""
    if np.bincount(labels).min() < FOLDS - 1:
        return None
    rng = np.random.default_rng([seed, FOLDS])
    folds = np.zeros(len(labels), dtype=np.int8)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = 1 + (np.arange(len(members)) + rng.integers(FOLDS - 1)) % (FOLDS - 1)
    return folds


def default_val_split(images: int) -> float:
    """0.2, or less on large sets: a validation set past ``MAX_DEFAULT_VAL`` images
    measures hardly better and costs training images."""
    return min(DEFAULT_VAL_SPLIT, MAX_DEFAULT_VAL / max(1, images))


def _subsets(data: ImageData) -> np.ndarray:
    return data.subset if data.subset is not None else np.full(len(data.labels), UNASSIGNED)


def _stratified(data: ImageData, pool: np.ndarray, val_split: float, rng) -> tuple:
    train_idx, val_idx = [], []
    for label, name in enumerate(data.class_names):
        members = pool[data.labels[pool] == label]
        n_val = max(1, round(len(members) * val_split))
        if len(members) - n_val < 1:
            raise UsageError(
                f"class {name!r} has {len(members)} image(s): too few to split for "
                "validation; add images or remove the class"
            )
        members = rng.permutation(members)
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return rng.permutation(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val")
FOLDS_ARRAY = "folds"


def save_split(data: DatasetSplit, directory: Path) -> None:
    """Write the split as ``.npy`` files that trial processes memory-map.

    The run directory keeps its own copy, so a resumed search trains on exactly the
    images it started with even if the source folder changed since.
    """
    from automl_core.rundir import atomic_target, write_json

    directory = Path(directory)
    names = SPLIT_ARRAYS if data.folds is None else (*SPLIT_ARRAYS, FOLDS_ARRAY)
    for name in names:
        with atomic_target(directory / f"{name}.npy", private=True) as tmp:
            np.save(tmp, getattr(data, name))
    write_json(directory / "classes.json", data.class_names)


def load_split(directory: Path) -> DatasetSplit:
    """Read a split written by ``save_split`` (memory-mapped, not loaded whole)."""
    import json

    directory = Path(directory)
    arrays = [np.load(directory / f"{name}.npy", mmap_mode="r") for name in SPLIT_ARRAYS]
    folds = directory / f"{FOLDS_ARRAY}.npy"
    return DatasetSplit(
        *arrays,
        json.loads((directory / "classes.json").read_text()),
        np.load(folds) if folds.exists() else None,
    )
