"""Decoded image data, the seeded stratified split, and the one image decoder.

Training and prediction decode images with the same function, so a model sees the same
pixels in both.
"""

from __future__ import annotations

import io
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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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
    at most ``MAX_DEFAULT_VAL`` images). Test images never train."""
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
    else:
        train, val = _stratified(data, np.flatnonzero(pool), val_split, rng)
    return DatasetSplit(
        data.images[train],
        data.labels[train],
        data.images[val],
        data.labels[val],
        list(data.class_names),
    )


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


JPEG_MAGIC = b"\xff\xd8\xff"
"""How every JPEG file starts, whatever its name."""


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image file to uint8 RGB of shape (size, size, 3).

    The format is found from the content, not the extension. EXIF orientation is applied,
    the first frame of an animation is used, transparency is composited onto white,
    16-bit and float images are scaled to 8 bits, and the image is resized (squashed,
    like Keras's ``image_dataset_from_directory``) with bilinear filtering. Plain JPEGs
    take libjpeg-turbo's fast path (same pixels), everything else Pillow's. Raises
    ``OSError`` (or Pillow's ``UnidentifiedImageError`` / ``DecompressionBombError``)
    for a file that is not a readable image.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(JPEG_MAGIC):
        pixels = _decode_plain_jpeg(data, size)
        if pixels is not None:
            return pixels
    return _decode_with_pillow(io.BytesIO(data), size)


def _decode_with_pillow(file: io.BytesIO, size: int) -> np.ndarray:
    """``decode_image`` for any format Pillow reads: the general (and fallback) path."""
    from PIL import Image, ImageOps

    with Image.open(file) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when large
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = _to_8bit(image)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return _squash(image, size)


def _squash(image, size: int) -> np.ndarray:
    """A Pillow image resized to ``size`` x ``size`` (bilinear), as a uint8 array."""
    from PIL import Image

    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(image, dtype=np.uint8)


def _decode_plain_jpeg(data: bytes, size: int) -> np.ndarray | None:
    """A baseline or progressive YCbCr / greyscale JPEG decoded by libjpeg-turbo (several
    times faster than through Pillow), or ``None`` for Pillow to handle: other colour
    spaces (CMYK), an orientation to apply, a possible decompression bomb, any error."""
    import simplejpeg
    from PIL import Image

    if not _upright(data):
        return None
    try:
        height, width, colour, _ = simplejpeg.decode_jpeg_header(data)
        if colour not in ("YCbCr", "Gray"):
            return None
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            return None  # Pillow warns, or refuses a bomb with its reason
        # the DCT scale Pillow's draft() picks: the largest of 1/8, 1/4, 1/2 keeping >= size
        scale = next((s for s in (8, 4, 2) if min(width // size, height // size) >= s), 1)
        pixels = simplejpeg.decode_jpeg(
            data, "rgb", min_width=-(-width // scale), min_height=-(-height // scale)
        )
    except ValueError:  # truncated, corrupt or unusual: Pillow decodes it or says why
        return None
    if pixels.shape[:2] == (size, size):
        return pixels
    return _squash(Image.fromarray(pixels), size)


def _upright(jpeg: bytes) -> bool:
    """Whether a JPEG's header leaves its pixels as stored: no EXIF orientation but 1,
    no XMP orientation (which Pillow honours too); ``False`` when unsure."""
    if b"\xff\xe1" not in jpeg:  # no APP1 (EXIF or XMP) segment anywhere
        return True
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: every header segment seen
            return True
        end = at + 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if marker == 0xE1:
            segment = jpeg[at + 4 : end]
            if segment.startswith(b"Exif\0\0") and _exif_orientation(segment[6:]) != 1:
                return False
            if b"tiff:Orientation" in segment:
                return False
        at = end
    return False


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 if absent; None if unreadable)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd : ifd + 2], order), 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            return int.from_bytes(tiff[entry + 8 : entry + 10], order)
    return 1


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


def _to_8bit(image):
    """A 16-bit or 32-bit greyscale image as 8-bit ``L``: Pillow's convert would clip."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float64)
    if image.mode != "F" and pixels.max(initial=0) > 255:
        pixels = pixels / 257.0  # 16-bit range onto 8 bits
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
