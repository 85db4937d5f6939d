"""The bar to clear: the plain Keras script a skilled user writes instead of using automl.

An airbench-style net (3 groups of conv -> max-pool -> batch norm -> GELU -> conv ->
batch norm -> GELU, widths W/4W/4W), flip + 2-pixel translation, label smoothing 0.2,
Nesterov SGD at batch 512 with a one-cycle schedule (linear warm-up, linear decay to
zero), flip test-time averaging. Trained on the 40,000 images the CIFAR-10 search uses and
scored on the same 10,000 held-out ones (``cifar10_data.py``). Deliberately independent
of automl. With ``--seconds``, the first epoch is timed, then the number of epochs that
fits is fixed and the schedule stretched or shrunk to end there.

    python benchmarks/reference_recipe.py                          # 10 epochs, width 32
    python benchmarks/reference_recipe.py --seconds 600 --precision auto
    python benchmarks/reference_recipe.py --seconds 120 --train-images 10000
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import cifar10_data
import keras
import numpy as np

WARMUP = 0.2
"""Share of the steps spent warming the learning rate up from zero."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=cifar10_data.ARCHIVE)
    parser.add_argument("--work", type=Path, default=None, help="folder for the data")
    parser.add_argument("--epochs", type=int, default=10, help="without --seconds")
    parser.add_argument("--seconds", type=float, default=None, help="wall time to plan for")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default="auto")
    parser.add_argument("--width", type=int, default=32, help="first group's channels")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.4)
    parser.add_argument(
        "--train-images", type=int, default=None, help="train on this many (first per class)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "automl-cifar10"
    search_dir, holdout_dir = cifar10_data.prepare(args.archive, work)
    if args.train_images:
        search_dir = cifar10_data.subset(
            search_dir, args.train_images, work / f"subset-{args.train_images}"
        )
    result = train_and_score(search_dir, holdout_dir, args)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def train_and_score(search_dir: Path, holdout_dir: Path, args) -> dict:
    """Train on ``search_dir`` for ``args.epochs`` or ``args.seconds``; score on the holdout."""
    x, y, _ = cifar10_data.load(search_dir)
    x_test, y_test, _ = cifar10_data.load(holdout_dir)
    precision = chosen_precision(args.precision)
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if precision == "bfloat16" else "float32"
    )
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    train = training_batches(x, y, args.batch_size)
    steps = math.ceil(len(x) / args.batch_size)
    schedule = OneCycle(args.learning_rate, steps * args.epochs)
    model = network(x.shape[1:], int(y.max()) + 1, args.width)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=5e-3),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.2),
        metrics=["accuracy"],
    )
    epochs = args.epochs
    model.fit(train, epochs=1, verbose=2)
    if args.seconds:
        first = time.perf_counter() - started
        epochs = max(1, int(args.seconds / first))  # the first epoch also paid for tracing
        schedule.total_steps.assign(float(steps * epochs))
    model.fit(train, initial_epoch=1, epochs=epochs, verbose=2)
    plain = model.predict(x_test, batch_size=1000, verbose=0)
    mirrored = model.predict(x_test[:, :, ::-1], batch_size=1000, verbose=0)
    return {
        "precision": precision,
        "epochs": epochs,
        "train_images": len(x),
        "wall_seconds": time.perf_counter() - started,
        "holdout_accuracy": float(np.mean(np.argmax(plain + mirrored, 1) == y_test)),
        "holdout_accuracy_no_tta": float(np.mean(np.argmax(plain, 1) == y_test)),
    }


def chosen_precision(precision: str) -> str:
    """``auto``: bfloat16 where the CPU has AMX matrix units, else float32."""
    if precision == "auto":
        return "bfloat16" if has_amx() else "float32"
    return precision


def cpu_flags() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = [line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line]
    return {key.strip(): value.strip() for key, value in fields}


def has_amx() -> bool:
    return "amx_bf16" in cpu_flags().get("flags", "").split()


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """Shuffled batches, each image mirrored half the time and shifted by up to 2 pixels
    (reflect-padded, randomly cropped back), with one-hot labels."""
    import tensorflow as tf

    classes = int(y.max()) + 1
    height, width = x.shape[1:3]

    def augment(image, label):
        image = tf.image.random_flip_left_right(tf.cast(image, "float32"))
        image = tf.pad(image, [[2, 2], [2, 2], [0, 0]], mode="REFLECT")
        image = tf.image.random_crop(image, [height, width, 3])
        return image, tf.one_hot(label, classes)

    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=0)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def network(input_shape, classes: int, width: int):
    """Widths ``width``/4``width``/4``width``; softmax in float32 whatever the policy."""
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    x = layers.Activation("gelu")(layers.BatchNormalization(momentum=0.6)(x))
    for filters in (width, 4 * width, 4 * width):
        for pool in (True, False):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            if pool:
                x = layers.MaxPooling2D()(x)
            x = layers.Activation("gelu")(layers.BatchNormalization(momentum=0.6)(x))
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(classes)(x)
    outputs = layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``WARMUP`` of the steps, then linear decay to
    0 at ``total_steps`` (a variable: assign it to re-plan while training)."""

    def __init__(self, peak: float, total_steps: int):
        self.peak = peak
        self.total_steps = keras.Variable(float(total_steps), trainable=False)

    def __call__(self, step):
        total = keras.ops.convert_to_tensor(self.total_steps)
        progress = keras.ops.cast(step, "float32") / total
        rising = progress / WARMUP
        falling = (1.0 - progress) / (1.0 - WARMUP)
        return self.peak * keras.ops.clip(keras.ops.minimum(rising, falling), 0.0, 1.0)


def print_result(result: dict) -> None:
    flags = cpu_flags()
    print(f"cpu: {flags.get('model name', 'unknown')}, AMX: {'yes' if has_amx() else 'no'}")
    print(
        f"precision {result['precision']}, {result['epochs']} epochs on "
        f"{result['train_images']} images, {result['wall_seconds']:.0f} s wall, held-out "
        f"accuracy {result['holdout_accuracy']:.4f} with flip TTA "
        f"({result['holdout_accuracy_no_tta']:.4f} without)"
    )


if __name__ == "__main__":
    main()
