"""A folder of real users' kind: a few hundred photos of 300 to 500 pixels, four classes.

Made from CIFAR-10 (../shared/datasets/cifar10-train.tar.gz): each 32x32 image is cropped
to a random 4:3 window, upscaled to 400x300 to 500x375 (either orientation), blurred,
given sensor noise and saved as a JPEG, as a phone photo of a small subject would be.
100 photos per class to search, 100 more per class held out. Then, side by side on the
same folder: `automl search --time-budget 10m`, and the classic CNN at 10 epochs (one
trial, `baseline_cnn`, no augmentation, no budget). Prints the CPU, whether it has AMX,
the precision each run trained in, held-out accuracy, wall time, and the candidate and
training image size that won.

    python benchmarks/photos.py [--budget 10m] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cifar10_data
import numpy as np

from automl_core.execution.worker import end_with_parent

CLASSES = ("airplane", "cat", "ship", "truck")
CLASSIC = ["--architectures", "baseline_cnn", "--augmenters", "none", "--max-trials", "1"]
CLASSIC += ["--epochs", "10", "--patience", "10"]
PER_CLASS = 100
"""Photos per class to search; as many again are held out."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=cifar10_data.ARCHIVE)
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and runs")
    args = parser.parse_args()
    from automl_core.training.precision import cpu_has_bfloat16_matrix_units, cpu_info

    print(f"CPU: {cpu_info()[0]}; AMX: {'yes' if cpu_has_bfloat16_matrix_units() else 'no'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="automl-photos-"))
    search_dir, holdout_dir = make_photos(args.archive, work)
    rows = [
        run("search", search_dir, holdout_dir, work, ["--time-budget", args.budget]),
        run("classic CNN, 10 epochs", search_dir, holdout_dir, work, CLASSIC),
    ]
    print_table(rows)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def make_photos(archive: Path, work: Path) -> tuple[Path, Path]:
    """``work/photos/search`` and ``work/photos/holdout``, made once."""
    from PIL import Image, ImageFilter

    root = work / "photos"
    search_dir, holdout_dir = root / "search", root / "holdout"
    if holdout_dir.exists():
        return search_dir, holdout_dir
    cifar_search, _ = cifar10_data.prepare(archive, work / "cifar10")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        files = sorted((cifar_search / name).iterdir())
        chosen = rng.choice(len(files), 2 * PER_CLASS, replace=False)
        for rank, index in enumerate(chosen):
            target = (search_dir if rank < PER_CLASS else holdout_dir) / name
            target.mkdir(parents=True, exist_ok=True)
            with Image.open(files[index]) as small:
                photo = _photo(small.convert("RGB"), rng, Image, ImageFilter)
            photo.save(target / f"{name}_{rank:03d}.jpg", quality=int(rng.integers(80, 93)))
    return search_dir, holdout_dir


def _photo(image, rng, Image, ImageFilter):
    """A 32x32 image as a 300-500 pixel photo: a 4:3 crop, upscaled, blurred, noisy."""
    landscape = rng.random() < 0.75
    w, h = (32, 24) if landscape else (24, 32)
    x, y = rng.integers(0, 33 - w), rng.integers(0, 33 - h)
    long_side = int(rng.integers(400, 501))
    size = (long_side, long_side * 3 // 4) if landscape else (long_side * 3 // 4, long_side)
    photo = image.crop((x, y, x + w, y + h)).resize(size, Image.BICUBIC)
    photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 2.5))))
    pixels = np.asarray(photo, dtype=np.float32) + rng.normal(0, 3.0, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def print_table(rows: list[dict]) -> None:
    """The runs side by side, as a Markdown table."""
    print()
    print("| run | held-out acc | wall | winner | image size | val acc | precision |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | **{r['holdout_accuracy']:.4f}** | {r['wall_seconds']:.0f} s | "
            f"{r['winner']} | {r['image_size']} | {r['val_accuracy']:.4f} | {r['precision']} |"
        )


def run(name: str, search_dir: Path, holdout_dir: Path, work: Path, flags: list[str]) -> dict:
    run_dir = work / ("run-" + name.split(",")[0].replace(" ", "-"))
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "automl_core.cli", "search", str(search_dir)]
    command += ["--out", str(run_dir), *flags]
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, preexec_fn=partial(end_with_parent, signal.SIGTERM))
    wall = time.time() - started
    winner = json.loads((run_dir / "winner" / "winner.json").read_text())
    precision = json.loads((run_dir / "precision.json").read_text())
    sizes = [v for k, v in winner["hyperparameters"].items() if k.endswith("/image_size")]
    return {
        "name": name,
        "holdout_accuracy": holdout_accuracy(run_dir, holdout_dir),
        "wall_seconds": wall,
        "winner": f"{winner['architecture']} + {winner['augmenter']}",
        "image_size": sizes[0] if sizes else winner["input_shape"][0],
        "val_accuracy": winner["val_accuracy"],
        "precision": precision["architectures"].get(winner["architecture"], "float32"),
    }


def holdout_accuracy(run_dir: Path, holdout_dir: Path) -> float:
    """The exported winner on the held-out photos, decoded as `automl predict` does."""
    from automl_core.results.predict import classify, image_files, load_predictor

    predictor = load_predictor(run_dir / "winner" / "model.keras")
    files = image_files([holdout_dir])
    predicted = [r["top"][0]["class"] for r in classify(predictor, files, top_k=1)]
    return float(np.mean([p == f.parent.name for p, f in zip(predicted, files, strict=True)]))


if __name__ == "__main__":
    main()
