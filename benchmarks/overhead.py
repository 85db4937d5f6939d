"""Per-trial overhead: one trial through the engine against a plain ``model.fit`` script.

    python benchmarks/overhead.py [--per-class 1000] [--epochs 40] [--workers-per-class 100]
                                  [--workers-epochs 5] [--executor local] [--repeats 1]

The same architecture (``baseline_cnn``, its default hyperparameters), data (a CIFAR-10
subset from ``--cifar``) and epochs, trained side by side in one run:

- through the engine: a real ``automl_core.engine.search.search`` of two trials, each timed from
  the moment it is handed to the executor to the moment its result is back (process
  start, TensorFlow import, cache read, build, training, evaluation, saving). On a GPU
  slot the second finds its process ready, started while the first trained; on the CPU
  every trial starts its own;
- as a plain script: a fresh process that builds the same model and calls ``model.fit`` on
  the same arrays, timed around ``model.fit``.

Printed: both wall times, their ratio, and the per-trial fixed cost (the trial's wall time
less its own ``model.fit``). Then four trials with one CPU worker against two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from automl_core import hookimpl


class TrialClock:
    """A plugin that records when each trial was handed out and when its result came back."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.results: dict[str, object] = {}
        self.handed_out: dict[str, float] = {}

    @hookimpl
    def trial_start(self, run, spec):
        self.started[spec.trial_id] = time.perf_counter()
        self.handed_out[spec.trial_id] = time.time()

    @hookimpl
    def trial_end(self, run, result):
        self.ended[result.trial_id] = time.perf_counter()
        self.results[result.trial_id] = result
        if result.status != "completed":
            raise SystemExit(f"trial {result.trial_id} {result.status}: {result.error}")

    def span(self) -> float:
        """Seconds from the first trial handed out to the last result back."""
        return max(self.ended.values()) - min(self.started.values())


def cifar_subset(cifar: Path, per_class: int, dest: Path) -> Path:
    """The first ``per_class`` images of every CIFAR-10 class, copied to ``dest``."""
    for class_dir in sorted(p for p in cifar.iterdir() if p.is_dir()):
        (dest / class_dir.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copyfile(image, dest / class_dir.name / image.name)
    return dest


def engine_search(images: Path, out: Path, trials: int, epochs: int, **settings) -> TrialClock:
    """A real search of ``baseline_cnn`` without augmentation; its trials' clock."""
    from automl_core.engine.search import search
    from automl_core.engine.settings import SearchConfig
    from automl_core.plugin.manager import load_plugins

    plugins = load_plugins()
    clock = TrialClock()
    plugins.manager.register(clock, name="trial-clock")
    config = SearchConfig(
        str(images),
        architectures=["baseline_cnn"],
        augmenters=["none"],
        max_trials=trials,
        epochs=epochs,
        patience=epochs,  # train every epoch, as the plain script does
        out=str(out),
        **settings,
    )
    search(config, plugins)
    return clock


def plain_fit(run_dir: Path, trial_id: str, epochs: int, batch_size: int, seed: int) -> float:
    """``model.fit`` on the run's arrays, with the trial's model and hyperparameters (AdamW,
    warm-up then cosine decay, label smoothing), written in plain Keras, in the precision a
    trial trains in by default (``--precision auto``)."""
    import keras
    import tensorflow as tf

    from automl_core.training.precision import recorded_bfloat16_faster, training_policy

    gpus = tf.config.list_physical_devices("GPU")
    policy = training_policy(  # baseline_cnn declares it; the search measured bfloat16
        "auto", on_gpu=bool(gpus), declared=True, bfloat16_faster=recorded_bfloat16_faster(run_dir)
    )
    keras.mixed_precision.set_global_policy(policy or "float32")

    from automl_core.data.dataset import load_split
    from automl_core.rundir import read_json
    from automl_core.training.space import architecture_scope, from_config
    from automl_plugins.baseline_cnn import baseline_cnn

    data = load_split(run_dir / "data")
    trial = read_json(run_dir / "trials" / trial_id / "metrics.json")
    values = {name.rsplit("/", 1)[-1]: v for name, v in trial["hyperparameters"].items()}
    if (values["optimizer"], values["schedule"]) != ("adamw", "cosine"):
        raise SystemExit(f"the plain script is written for adamw + cosine, not {values}")
    keras.utils.set_random_seed(seed)
    hp = from_config(trial["hp_config"])
    with architecture_scope(hp, "baseline_cnn"):
        model = baseline_cnn(hp, data.input_shape, data.num_classes)
    steps = -(-len(data.x_train) // batch_size) * epochs
    warmup = int(values["warmup"] * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, warmup_target=values["learning_rate"], warmup_steps=warmup
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=values["weight_decay"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=values["label_smoothing"]),
        metrics=["accuracy"],
    )
    x_train, x_val = data.x_train.astype("float32"), data.x_val.astype("float32")
    y_train, y_val = (
        keras.utils.to_categorical(y, data.num_classes) for y in (data.y_train, data.y_val)
    )
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    return time.perf_counter() - start


def plain_fit_in_fresh_process(
    run_dir: Path, trial_id: str, epochs: int, batch_size: int, seed: int
) -> float:
    options = ["--epochs", str(epochs), "--batch-size", str(batch_size), "--seed", str(seed)]
    out = subprocess.run(
        [sys.executable, __file__, "--plain-fit", str(run_dir), "--trial", trial_id, *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def overhead(args, images: Path, work: Path) -> None:
    print(
        f"two trials: baseline_cnn, {args.per_class * 10} CIFAR-10 images (20% validation), "
        f"{args.epochs} epochs, batch {args.batch_size}, executor {args.executor}"
    )
    for repeat in range(args.repeats):
        out = work / f"overhead-{repeat}"
        settings = {"batch_size": args.batch_size, "seed": args.seed, "executor": args.executor}
        clock = engine_search(images, out, 2, args.epochs, **settings)
        for trial_id, process in (("0", "first"), ("1", "second")):
            trial = clock.ended[trial_id] - clock.started[trial_id]
            result = clock.results[trial_id]
            fit = result.train_seconds
            start_up = result.started_at - clock.handed_out[trial_id]
            in_trial = result.ended_at - result.started_at - fit
            plain = plain_fit_in_fresh_process(
                out, trial_id, args.epochs, args.batch_size, args.seed
            )
            print(
                f"  trial {trial_id} ({process}): plain model.fit {plain:7.1f}s | engine trial "
                f"{trial:7.1f}s (its model.fit {fit:6.1f}s) | ratio {trial / plain:5.3f} | "
                f"fixed cost {trial - fit:5.1f}s"
            )
            print(
                f"    of which: process start, imports, data {start_up:4.1f}s | build, "
                f"evaluate, save {in_trial:4.1f}s | result back "
                f"{trial - fit - start_up - in_trial:4.1f}s"
            )


def workers(args, images: Path, work: Path) -> None:
    print(
        f"four trials: baseline_cnn, {args.workers_per_class * 10} images, "
        f"{args.workers_epochs} epochs, same seed"
    )
    spans = {}
    for count in (1, 2):
        settings = {"batch_size": args.batch_size, "seed": args.seed, "workers": count}
        clock = engine_search(images, work / f"workers-{count}", 4, args.workers_epochs, **settings)
        spans[count] = clock.span()
        print(f"  {count} CPU worker(s): {spans[count]:7.1f}s from first trial out to last back")
    print(f"  speed-up of two workers over one: {spans[1] / spans[2]:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar/train"))
    parser.add_argument("--per-class", type=int, default=1000, help="images per class, one trial")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the one trial")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--executor", default="local", help="executor of the one trial")
    parser.add_argument("--repeats", type=int, default=1, help="engine/plain pairs to time")
    parser.add_argument("--workers-per-class", type=int, default=100, help="0 skips workers")
    parser.add_argument("--workers-epochs", type=int, default=5)
    parser.add_argument("--plain-fit", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trial", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_fit:
        seconds = plain_fit(args.plain_fit, args.trial, args.epochs, args.batch_size, args.seed)
        print(json.dumps({"seconds": seconds}))
        return
    print(f"{os.cpu_count()} CPU cores; trials run in their own processes")
    with tempfile.TemporaryDirectory(prefix="automl-overhead-") as tmp:
        work = Path(tmp)
        os.environ["AUTOML_CACHE_DIR"] = str(work / "cache")
        overhead(args, cifar_subset(args.cifar, args.per_class, work / "one"), work)
        if args.workers_per_class:
            subset = cifar_subset(args.cifar, args.workers_per_class, work / "four")
            workers(args, subset, work)


if __name__ == "__main__":
    main()
