"""Transfer learning on a small photo folder: scratch, pretrained backbones, embeddings.

Made from CIFAR-10 (../shared/datasets/cifar10-train.tar.gz). A backbone (``--backbone``,
default ``mobilenet_v3_small``, 96 px) is pretrained here on 8 of the 10 classes and saved
as its ImageNet weights file in a Keras home of its own (what `automl weights import FILE
--for NAME` places). The other 2 classes make the folder: 100 photos
each, upscaled to 96-128 px, and 500 more each held out. Then, side by side on it:

(a) `automl search --time-budget B --offline` with no weights: every candidate trains from
    scratch;
(b) the same search with the weights in place: the pretrained backbone and its
    ``<backbone>_embedding`` candidate join (``--offline`` too: nothing is downloaded,
    and the other backbones, without their files, are not screened on this few images);
(c) ``<backbone>_embedding`` alone, one trial (features computed once, head trained).

Prints the CPU, whether it has AMX, the pretraining's own figures, then each run's
held-out accuracy, wall time, winner, image size, validation accuracy and precision.

    python benchmarks/transfer.py [--budget 10m] [--work DIR] [--backbone NAME] [--prepare-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cifar10_data
import numpy as np
from photos import print_table, run

from automl_core.training.features import leaves
from automl_plugins.backbones import BACKBONES

CLASSES = ("deer", "truck")
"""The folder's classes; the backbone is pretrained on the other eight."""
PER_CLASS, HOLDOUT_PER_CLASS = 100, 500
SIZE = 96
EMBEDDING = ["--augmenters", "none", "--max-trials", "1", "--epochs", "60", "--patience", "10"]
EMBEDDING += ["--offline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=cifar10_data.ARCHIVE)
    parser.add_argument("--budget", default="10m", help="each search's --time-budget")
    parser.add_argument("--work", type=Path, default=None, help="folder for data, weights, runs")
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default="mobilenet_v3_small",
        help="the one pretrained",
    )
    parser.add_argument("--pretrain-images", type=int, default=4000, help="per class")
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument(
        "--pretrain-size", type=int, default=SIZE, help="side the backbone is pretrained at"
    )
    parser.add_argument("--pretrain-precision", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument(
        "--prepare-only", action="store_true", help="make the folders and the weights, then stop"
    )
    args = parser.parse_args()
    from automl_core.training.precision import cpu_has_bfloat16_matrix_units, cpu_info

    print(f"CPU: {cpu_info()[0]}; AMX: {'yes' if cpu_has_bfloat16_matrix_units() else 'no'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="automl-transfer-"))
    cifar_search, cifar_holdout = cifar10_data.prepare(args.archive, work / "cifar10")
    search_dir, holdout_dir = make_folder(cifar_search, cifar_holdout, work / "photos")
    keras_home, no_weights = work / "keras-home", work / "keras-home-empty"
    (no_weights / "models").mkdir(parents=True, exist_ok=True)
    pretraining = (args.backbone, args.pretrain_images, args.pretrain_epochs, args.pretrain_size)
    pretraining += (args.pretrain_precision,)
    with_keras_home(keras_home, pretrain, cifar_search, cifar_holdout, *pretraining)
    if args.prepare_only:
        return
    budget = ["--time-budget", args.budget, "--offline"]
    embedding = f"{args.backbone}_embedding"
    runs = [
        (no_weights, "scratch", budget),
        (keras_home, "pretrained", budget),
        (keras_home, "embedding alone", [*EMBEDDING, "--architectures", embedding]),
    ]
    rows = [
        with_keras_home(home, run, name, search_dir, holdout_dir, work, flags)
        for home, name, flags in runs
    ]
    print_table(rows)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def make_folder(cifar_search: Path, cifar_holdout: Path, root: Path) -> tuple[Path, Path]:
    """``root/search`` (``PER_CLASS`` photos a class) and ``root/holdout``, made once: CIFAR
    images of ``CLASSES`` upscaled (bicubic) to a side of 96 to 128 pixels, as PNGs."""
    from PIL import Image

    search_dir, holdout_dir = root / "search", root / "holdout"
    if holdout_dir.exists():
        return search_dir, holdout_dir
    rng = np.random.default_rng(0)
    for source, target, count in (
        (cifar_search, search_dir, PER_CLASS),
        (cifar_holdout, holdout_dir, HOLDOUT_PER_CLASS),
    ):
        for name in CLASSES:
            (target / name).mkdir(parents=True)
            for file in sorted((source / name).iterdir())[:count]:
                side = int(rng.integers(96, 129))
                with Image.open(file) as image:
                    photo = image.convert("RGB").resize((side, side), Image.BICUBIC)
                photo.save(target / name / f"{file.stem}.png")
    return search_dir, holdout_dir


def pretrain(
    search: Path,
    holdout: Path,
    backbone: str,
    per_class: int,
    epochs: int,
    size: int,
    precision: str,
) -> None:
    """Train ``backbone`` with a classifier on the other eight classes, at ``size`` (its
    weights fit any input side) in ``precision``, and save it as its ``SIZE`` weights file
    in Keras's cache (once: an existing file is kept)."""
    from automl_plugins.backbones import imagenet_file

    target = imagenet_file(backbone, SIZE)
    if target.exists():
        print(f"pretrained weights: {target} (kept from an earlier run)")
        return
    import keras
    import tensorflow as tf

    from automl_plugins.backbones import backbone_model

    others = [p.name for p in sorted(search.iterdir()) if p.name not in CLASSES]
    x, y = load(search, others, per_class)
    x_test, y_test = load(holdout, others, 200)
    keras.utils.set_random_seed(0)
    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    base = backbone_model(backbone, size)
    inputs = keras.Input(x.shape[1:])
    h = keras.layers.Resizing(size, size)(inputs)
    if BACKBONES[backbone].rescale:  # the backbone's own preprocessing
        h = keras.layers.Rescaling(1 / 127.5, offset=-1)(h)
    h = keras.layers.GlobalAveragePooling2D()(base(h))
    classify = keras.layers.Dense(len(others), activation="softmax", dtype="float32")
    outputs = classify(keras.layers.Dropout(0.2)(h))
    model = keras.Model(inputs, outputs)
    steps = epochs * -(-len(x) // 64)
    model.compile(
        keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    flip = keras.layers.RandomFlip("horizontal", seed=0)
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(64)
    train = train.map(lambda a, b: (flip(tf.cast(a, "float32"), training=True), b))
    started = time.perf_counter()
    model.fit(train.prefetch(2), epochs=epochs, verbose=2, validation_data=(x_test, y_test))
    recalibrate(model, x)
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(x_test.astype("float32"), y_test, verbose=0)
    print(
        f"pretrained {backbone} at {size} px in {precision} on {len(x)} images of "
        f"{len(others)} classes, {epochs} epochs in {seconds:.0f} s: held-out accuracy "
        f"{accuracy:.4f} "
        f"({len(x_test)} images)"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    base.save(target)  # Keras's legacy .h5, as the published ImageNet files


def recalibrate(model, images: np.ndarray, batches: int = 60, momentum: float = 0.9) -> None:
    """Batch norm's moving statistics measured again on ``batches`` batches of ``images``.
    MobileNetV2's momentum (0.999) needs thousands of steps: after a few epochs the moving
    averages are far from the batch statistics, and the network in inference mode (how a
    frozen backbone runs) is near chance."""
    import keras

    norms = [layer for layer in leaves(model) if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = momentum
    order = np.random.default_rng(0).permutation(len(images))
    for k in range(batches):
        model(images[order[k * 64 % len(images) :][:64]].astype("float32"), training=True)
    for layer, value in zip(norms, kept, strict=True):
        layer.momentum = value


def load(folder: Path, classes: list[str], per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images (by name) of each of ``classes``, and their labels."""
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).iterdir())[:per_class]:
            with Image.open(file) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def with_keras_home(home: Path, function, *args):
    """``function(*args)`` with ``KERAS_HOME`` set to ``home`` (searches inherit it)."""
    saved = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(home)
    try:
        return function(*args)
    finally:
        if saved is None:
            del os.environ["KERAS_HOME"]
        else:
            os.environ["KERAS_HOME"] = saved


if __name__ == "__main__":
    main()
