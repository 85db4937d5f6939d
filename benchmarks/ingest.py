"""Ingest benchmark: our decode-once cache against Keras reading the same folder.

    python benchmarks/ingest.py [--cifar /tmp/cifar/train] [--photos 500] [--repeats 3]

CIFAR-10 (50,000 32x32 JPEGs): our first decode (empty cache) and our cached load
against ``keras.utils.image_dataset_from_directory`` iterated once over the whole folder,
each in its own fresh process, side by side in one run; printed as ratios, with peak
memory. Each is the fastest of ``--repeats`` runs, the three kinds taking turns (as
``timeit`` does: on a shared machine the slower runs measure the neighbours). Then a
folder of large photos (written once to /tmp) decoded to 224x224. The load average is
printed before and after: the ratios are fair only side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTO_SIZE = (3000, 2000)


def child(kind: str, folder: str, size: int) -> dict:
    """One measurement, run in a fresh process so its peak memory is its own."""
    if kind == "keras":
        import keras

        start = time.perf_counter()
        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=256, shuffle=False, verbose=False
        )
        images = sum(int(x.shape[0]) for x, _ in dataset)
    else:
        from automl_plugins.image_folder import load_image_folder

        start = time.perf_counter()
        data = load_image_folder(folder, image_size=size)
        pixels = np.array(data.images)  # read every pixel, as Keras does
        images = len(pixels)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "images": images, "peak_mib": max(own, workers) / 1024}


def measure(kind: str, folder: Path, size: int, cache: Path) -> dict:
    env_code = f"import os; os.environ['AUTOML_CACHE_DIR'] = {str(cache)!r}; "
    code = (
        env_code
        + f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import ingest; "
        f"print(json.dumps(ingest.child({kind!r}, {str(folder)!r}, {size})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_photos(folder: Path, count: int) -> Path:
    """``count`` smooth, camera-sized JPEGs in two classes (kept between runs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / ("a" if i % 2 else "b") / f"{i:04d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
        small.resize(PHOTO_SIZE, Image.Resampling.BICUBIC).save(path, quality=90)
    return folder


def fastest(results: list[dict]) -> dict:
    """The fastest run, with every run's seconds under ``runs``."""
    best = min(results, key=lambda result: result["seconds"])
    return {**best, "runs": [result["seconds"] for result in results]}


def row(name: str, result: dict, baseline: dict | None = None) -> str:
    rate = result["images"] / result["seconds"]
    ratio = f"{baseline['seconds'] / result['seconds']:8.1f}x" if baseline else " " * 9
    return (
        f"{name:<28}{result['seconds']:8.2f}s {rate:10.0f} img/s {ratio} "
        f"{result['peak_mib']:8.0f} MiB peak"
        + (
            "  (runs: " + " ".join(f"{s:.2f}" for s in result["runs"]) + ")"
            if "runs" in result
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar/train"))
    parser.add_argument("--photos", type=int, default=500, help="large photos (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the fastest counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        cache = Path(tmp) / "cache"
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        runs: dict[str, list[dict]] = {"keras": [], "first": [], "cached": []}
        for repeat in range(args.repeats):
            runs["keras"].append(measure("keras", args.cifar, 32, cache))
            fresh = Path(tmp) / f"cache-{repeat}"
            runs["first"].append(measure("ours", args.cifar, 32, fresh))
            runs["cached"].append(measure("ours", args.cifar, 32, fresh))
        keras_run, first, cached = (fastest(runs[kind]) for kind in ("keras", "first", "cached"))
        print(f"CIFAR-10 {args.cifar}: {first['images']} images at 32x32 (speed-up vs Keras)")
        print(row("keras image_dataset_from_dir", keras_run))
        print(row("ours, first decode", first, keras_run))
        print(row("ours, cached load", cached, keras_run))
        if args.photos:
            photos = write_photos(Path("/tmp/automl-bench-photos"), args.photos)
            first = measure("ours", photos, 224, cache)
            cached = measure("ours", photos, 224, cache)
            print(f"{args.photos} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG -> 224x224")
            print(row("ours, first decode", first))
            print(row("ours, cached load", cached, first))
        print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
