"""Decoded image data, the seeded stratified split, and the one image decoder.

Training and prediction decode images with the same function, so a model sees the same
pixels in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl_core.errors import UsageError

MAX_AUTO_IMAGE_SIZE = 128
"""The largest side chosen when ``--image-size`` is not given (CPU-friendly)."""


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
            "skipped": self.skipped,
            "cache": self.cache,
        }


@dataclass
class DatasetSplit:
    """The train / validation arrays a trial reads."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def split(data: ImageData, val_split: float, seed: int) -> DatasetSplit:
    """Split every class into train and validation in the same proportion, seeded."""
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {val_split}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label, name in enumerate(data.class_names):
        members = np.flatnonzero(data.labels == label)
        n_val = max(1, round(len(members) * val_split))
        if len(members) - n_val < 1:
            raise UsageError(
                f"class {name!r} has {len(members)} image(s): too few to split for "
                "validation; add images or remove the class"
            )
        members = rng.permutation(members)
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    train = rng.permutation(np.concatenate(train_idx))
    val = np.sort(np.concatenate(val_idx))
    return DatasetSplit(
        data.images[train],
        data.labels[train],
        data.images[val],
        data.labels[val],
        list(data.class_names),
    )


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image file to uint8 RGB of shape (size, size, 3).

    EXIF orientation is applied, transparency is composited onto white, and the image
    is resized (squashed, like Keras's ``image_dataset_from_directory``) with bilinear
    filtering. Raises ``OSError`` (or Pillow's ``UnidentifiedImageError``) for a file
    that is not a readable image.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when large
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


def save_split(data: DatasetSplit, directory: Path) -> None:
    """Write the split as ``.npy`` files that trial processes memory-map.

    The run directory keeps its own copy, so a resumed search trains on exactly the
    images it started with even if the source folder changed since.
    """
    from automl_core.rundir import atomic_target, write_json

    directory = Path(directory)
    for name in SPLIT_ARRAYS:
        with atomic_target(directory / f"{name}.npy") as tmp:
            np.save(tmp, getattr(data, name))
    write_json(directory / "classes.json", data.class_names)


def load_split(directory: Path) -> DatasetSplit:
    """Read a split written by ``save_split`` (memory-mapped, not loaded whole)."""
    import json

    directory = Path(directory)
    arrays = [np.load(directory / f"{name}.npy", mmap_mode="r") for name in SPLIT_ARRAYS]
    return DatasetSplit(*arrays, json.loads((directory / "classes.json").read_text()))
