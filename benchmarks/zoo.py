"""Every registered architecture at its defaults on 32x32x3, 10 classes, side by side.

Prints parameters, training throughput (images/s, batch 32, the trial's own recipe) and
inference latency (ms/image at batch 1 and batch 64), each also as a ratio to
``baseline_cnn``, all measured in this one run on random data.

    PYTHONPATH=$PWD/.shim python benchmarks/zoo.py [PATTERN ...]
"""

from __future__ import annotations

import sys
import time

import numpy as np

SHAPE, CLASSES, BATCH = (32, 32, 3), 10, 32
TRAIN_STEPS, BATCH1_CALLS, BATCH64_CALLS = 8, 30, 5


def measure(name: str, factory) -> dict:
    """Build ``name`` with its defaults as a trial does, then time training and inference."""
    import keras
    import tensorflow as tf

    from automl_core.training import recipe
    from automl_core.training.space import architecture_scope, initial_space

    keras.utils.set_random_seed(0)
    hp = initial_space([name], ["none"])
    with architecture_scope(hp, name):
        model = factory(hp, SHAPE, CLASSES)
        plan = recipe.declare(hp, model, batch_size=BATCH)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH * TRAIN_STEPS, *SHAPE)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, len(x))]
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()
    recipe.fit(model, plan, train.take(1), None, epochs=1, callbacks=[])  # compile + trace
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    train_rate = len(x) / (time.perf_counter() - start)

    infer = tf.function(lambda batch: model(batch, training=False))
    return {
        "params": model.count_params(),
        "train": train_rate,
        "batch1": _latency(infer, x[:1], BATCH1_CALLS),
        "batch64": _latency(infer, np.concatenate([x, x])[:64], BATCH64_CALLS),
    }


def _latency(infer, batch, calls: int) -> float:
    """Milliseconds per image, after one warm-up call."""
    infer(batch)
    start = time.perf_counter()
    for _ in range(calls):
        infer(batch).numpy()
    return (time.perf_counter() - start) * 1000 / (calls * len(batch))


def main(patterns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from automl_core.plugin.manager import load_plugins

    components = load_plugins()["architectures"].select(patterns or ["*"])
    rows = {c.name: measure(c.name, c.obj) for c in components}
    base = rows.get("baseline_cnn")
    table = Table(title=f"architectures at their defaults, {SHAPE}, {CLASSES} classes")
    for column in ("architecture", "params", "train img/s", "ms/img b1", "ms/img b64"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for name, row in rows.items():
        table.add_row(
            name,
            f"{row['params'] / 1e6:.2f}M",
            _cell(row, base, "train", "{:.0f}"),
            _cell(row, base, "batch1", "{:.2f}"),
            _cell(row, base, "batch64", "{:.3f}"),
        )
    Console(width=120).print(table)


def _cell(row: dict, base: dict | None, key: str, fmt: str) -> str:
    """The value, and its ratio to the baseline's when there is one."""
    text = fmt.format(row[key])
    return f"{text} ({row[key] / base[key]:.2g}x)" if base else text


if __name__ == "__main__":
    main(sys.argv[1:])
