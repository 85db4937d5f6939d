"""How close the winner's in-model resizing is to automl's decoder, on photos.

The photos are ``photos.py``'s (CIFAR-10 images made into 300-500 pixel JPEGs). Each is
decoded whole (Pillow, no draft) and squashed inside a model by
``automl_core.training.input_size.squash``; that is compared, as the mean absolute
difference in 0..255 levels, with Pillow resizing the same pixels (what ``squash``
reproduces), with ``decode_image`` (automl's decoder, which lets libjpeg decode a large
JPEG at a reduced scale first) and, for scale, Keras's plain bilinear ``Resizing``. Then
the time to squash one photo (it grows with the photo's pixels times the size).

    python benchmarks/resize_fidelity.py [--photos 100] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import cache
from pathlib import Path

import cifar10_data
import numpy as np
import photos
from PIL import Image

SIDES = (32, 64, 96, 160, 224, 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None, help="folder for the photos")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="automl-resize-"))
    search_dir, _ = photos.make_photos(cifar10_data.ARCHIVE, work)
    files = sorted(search_dir.rglob("*.jpg"))
    files = files[:: max(1, len(files) // args.photos)][: args.photos]
    print(f"{len(files)} photos; mean absolute difference, 0..255 levels")
    print("| size | vs Pillow | rounded, vs Pillow | vs decode_image | plain `Resizing` vs it |")
    print("|---|---|---|---|---|")
    for side in SIDES:
        rows = np.array([differences(file, side) for file in files]).mean(axis=0)
        print(f"| {side} | " + " | ".join(f"{value:.2f}" for value in rows) + " |")
    for shape, side in (((750, 1000), 128), ((3000, 4000), 128), ((3000, 4000), 224)):
        print(f"{shape[1]}x{shape[0]} photo to {side}: {squash_ms(shape, side):.0f} ms (best of 5)")


@cache
def squashing(side: int):
    """A model that squashes any image to ``side`` pixels."""
    import keras

    from automl_core.training.input_size import squash

    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, squash(inputs, side))


def differences(file: Path, side: int) -> list[float]:
    """In-model against Pillow (as is and rounded), against ``decode_image``; plain
    bilinear ``Resizing`` against ``decode_image``."""
    import keras

    from automl_core.data.decode import REDUCING_GAP, decode_image

    with Image.open(file) as image:
        image = image.convert("RGB")
        pillow = image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
        pixels = np.asarray(image, dtype="float32")[None]
    ours = keras.ops.convert_to_numpy(squashing(side)(pixels))[0]
    plain = keras.ops.convert_to_numpy(keras.layers.Resizing(side, side)(pixels))[0]
    decoded = decode_image(file, side).astype("float32")
    pillow = np.asarray(pillow, dtype="float32")
    return [
        float(np.abs(ours - pillow).mean()),
        float(np.abs(np.rint(ours) - pillow).mean()),
        float(np.abs(ours - decoded).mean()),
        float(np.abs(plain - decoded).mean()),
    ]


def squash_ms(shape: tuple[int, int], side: int) -> float:
    model = squashing(side)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, *shape, 3)).astype("float32")
    model.predict_on_batch(pixels)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.predict_on_batch(pixels)
        times.append(time.perf_counter() - start)
    return min(times) * 1000


if __name__ == "__main__":
    main()
