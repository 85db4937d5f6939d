"""The ``image_folder`` dataset: one subfolder per class, decoded once into a disk cache.

The cache is keyed by every file's path, size and modification time plus the target
size, so a second search on an unchanged folder skips decoding altogether.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from automl_core import hookimpl
from automl_core.data import MAX_AUTO_IMAGE_SIZE, ImageData, decode_image
from automl_core.errors import UsageError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
CACHE_ENV = "AUTOML_CACHE_DIR"
CACHE_VERSION = 1


@hookimpl
def register_datasets(register):
    register(
        "image_folder",
        load_image_folder,
        description="a folder with one subfolder of images per class",
    )


def cache_root() -> Path:
    """``$AUTOML_CACHE_DIR``, else ``~/.cache/automl``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "automl")


def load_image_folder(source: str, *, image_size: int | None = None) -> ImageData:
    """Decode (or read from cache) every image under ``source/<class>/``."""
    root = Path(source)
    files, labels, class_names = _scan(root)
    size = image_size or typical_size(files)
    key = _cache_key(files, size)
    cached = _read_cache(cache_root() / key)
    if cached is None:
        cached = _write_cache(cache_root() / key, files, labels, class_names, size)
    images, kept_labels, skipped = cached
    return ImageData(
        images=images,
        labels=kept_labels,
        class_names=class_names,
        source=str(root),
        skipped=skipped,
        cache=str(cache_root() / key),
    )


def _scan(root: Path) -> tuple[list[Path], list[int], list[str]]:
    if not root.exists():
        raise UsageError(f"folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder of class subfolders")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels, class_names = [], [], []
    for class_dir in class_dirs:
        members = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )
        if members:
            labels += [len(class_names)] * len(members)
            class_names.append(class_dir.name)
            files += members
    if not class_names:
        raise UsageError(
            f"no class subfolders with images in {str(root)!r}: expected one subfolder "
            f"per class, e.g. {root / 'cat'}/1.jpg ({', '.join(sorted(EXTENSIONS))})"
        )
    if len(class_names) == 1:
        raise UsageError(
            f"only one class ({class_names[0]!r}) in {str(root)!r}: a classifier needs "
            "at least two class subfolders"
        )
    return files, labels, class_names


def typical_size(files: list[Path], sample: int = 200) -> int:
    """The median shorter side of a sample of the images, capped."""
    from PIL import Image

    step = max(1, len(files) // sample)
    sides = []
    for path in files[::step]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except OSError:
            continue
    if not sides:
        raise UsageError("none of the images could be read")
    return int(min(MAX_AUTO_IMAGE_SIZE, max(8, statistics.median(sides))))


def _cache_key(files: list[Path], size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _read_cache(directory: Path):
    try:
        meta = json.loads((directory / "meta.json").read_text())
        images = np.load(directory / "images.npy", mmap_mode="r")
        labels = np.load(directory / "labels.npy")
    except (OSError, ValueError):
        return None
    return images, labels, meta["skipped"]


def _write_cache(directory: Path, files, labels, class_names, size):
    def decode(path: Path):
        try:
            return decode_image(path, size), None
        except (OSError, ValueError, SyntaxError) as error:
            return None, f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(decode, files))
    kept = [i for i, (pixels, _) in enumerate(decoded) if pixels is not None]
    skipped = [
        {"path": str(files[i]), "reason": reason}
        for i, (_, reason) in enumerate(decoded)
        if reason is not None
    ]
    if not kept:
        raise UsageError("none of the images could be decoded")
    images = np.stack([decoded[i][0] for i in kept])
    kept_labels = np.asarray([labels[i] for i in kept], dtype=np.int32)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    np.save(staging / "images.npy", images)
    np.save(staging / "labels.npy", kept_labels)
    meta = {"classes": class_names, "size": size, "skipped": skipped}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        staging.rename(directory)
    except OSError:  # another search wrote the same cache first
        shutil.rmtree(staging, ignore_errors=True)
    return np.load(directory / "images.npy", mmap_mode="r"), kept_labels, skipped
