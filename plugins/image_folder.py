"""The ``image_folder`` dataset: class subfolders, train/val(/test) folders or a CSV.

Images are decoded once into a per-file disk cache (``automl_core.data.cache``) keyed by
each file's path, size, modification time, status change time and inode plus the target
size, so a second search on the same folder skips decoding and a changed file re-decodes
alone.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from automl_core import hookimpl
from automl_core.data.cache import ImageCache, cache_root
from automl_core.data.dataset import MAX_AUTO_IMAGE_SIZE, ImageData
from automl_core.data.scan import scan
from automl_core.errors import UsageError


@hookimpl
def register_datasets(register):
    register(
        "image_folder",
        load_image_folder,
        description="class subfolders, train/ + val/ (+ test/) folders, or a CSV of path,label",
    )


def load_image_folder(
    source: str, *, image_size: int | None = None, subset: int | None = None
) -> ImageData:
    """Decode (or read from cache) every usable image of ``source``; list the rest."""
    found = scan(source, subset)
    if not found.paths:
        raise UsageError(
            f"no image files in {source!r} ({len(found.skipped)} file(s) set aside): "
            "put images in its class subfolders"
        )
    size = image_size or typical_size(found.paths)
    cache = ImageCache(cache_root(), size)
    try:
        loaded = cache.load(found.paths, found.stats)
    finally:
        cache.close()
    skipped = found.skipped + [
        {"path": found.paths[i], "reason": reason} for i, reason in loaded.errors.items()
    ]
    good = [i for i in range(len(found.paths)) if i not in loaded.errors]
    if not good:
        first = skipped[0]
        raise UsageError(
            f"no readable images in {source!r}: all {len(skipped)} file(s) were skipped "
            f"(e.g. {first['path']}: {first['reason']})"
        )
    class_names = sorted({found.labels[i] for i in good})
    lost = sorted(set(found.labels) - set(class_names))
    warnings = found.warnings + [
        f"class {name!r} left out: none of its files is a readable image" for name in lost
    ]
    if len(class_names) == 1:
        raise UsageError(
            f"only one class ({class_names[0]!r}) in {source!r}: a classifier needs "
            "at least two class subfolders with readable images"
        )
    index = {name: k for k, name in enumerate(class_names)}
    return ImageData(
        images=loaded.images,
        labels=np.asarray([index[found.labels[i]] for i in good], dtype=np.int32),
        class_names=class_names,
        source=found.source,
        skipped=skipped,
        cache=str(cache.path),
        subset=np.asarray([found.subsets[i] for i in good], dtype=np.int8),
        layout=found.layout,
        warnings=warnings,
        cache_stats={"decoded": loaded.decoded, "reused": loaded.reused},
    )


def typical_size(files: list[str] | list[Path], sample: int = 200) -> int:
    """The median shorter side of a sample of the images, capped (the cap if none reads)."""
    from PIL import Image

    step = max(1, len(files) // sample)
    sides = []
    for path in files[::step]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are judged (and listed) by the decoder
            continue
    if not sides:  # the decoder will say what is wrong with each file
        return MAX_AUTO_IMAGE_SIZE
    return int(min(MAX_AUTO_IMAGE_SIZE, max(8, statistics.median(sides))))
