"""The CIFAR-10 benchmarks' data: one unpacking, one held-out split, one loader.

``cifar10_search.py`` and ``reference_recipe.py`` both use ``prepare``, so they train on
the same 40,000 images and score on the same 10,000 held-out ones (1,000 per class, drawn
with seed 0). Plain NumPy and Pillow: no automl, no TensorFlow.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-train.tar.gz"
HOLDOUT_PER_CLASS = 1000


def prepare(archive: Path, work: Path) -> tuple[Path, Path]:
    """Unpack once under ``work``; link a stratified holdout of 1,000 images per class
    apart. Returns the folders ``search`` and ``holdout`` (one subfolder per class)."""
    images = work / "train"
    if not images.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
    search_dir, holdout_dir = work / "search", work / "holdout"
    if not search_dir.exists():
        rng = np.random.default_rng(0)
        for class_dir in sorted(p for p in images.iterdir() if p.is_dir()):
            files = sorted(class_dir.iterdir())
            order = rng.permutation(len(files))
            for rank, index in enumerate(order):
                target = holdout_dir if rank < HOLDOUT_PER_CLASS else search_dir
                (target / class_dir.name).mkdir(parents=True, exist_ok=True)
                (target / class_dir.name / files[index].name).symlink_to(files[index])
    return search_dir, holdout_dir


def subset(folder: Path, images: int, target: Path) -> Path:
    """``target``: links to the first ``images`` / 10 files (by name) of each class of
    ``folder``, for quick runs on fewer images."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    per_class = images // len(classes)
    for class_dir in classes:
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for file in sorted(class_dir.iterdir())[:per_class]:
            link = target / class_dir.name / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
    return target


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of ``folder`` as uint8 RGB ``(n, h, w, 3)``, int32 labels (the index of
    its class folder, sorted by name) and the class names."""
    from PIL import Image

    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(names):
        for file in sorted((folder / name).iterdir()):
            with Image.open(file) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int32), names
