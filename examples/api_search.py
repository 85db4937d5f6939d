"""The Python API end to end: search a folder, read the leaderboard, classify photos.

python examples/api_search.py photos/ [--out runs/api] [photo.jpg ...]

It uses the example plugins of this folder: an architecture, an augmenter and a tuner.
"""

import argparse
from pathlib import Path

import automl_core

HERE = Path(__file__).parent
PLUGINS = [HERE / "plugins" / name for name in ("tiny_cnn.py", "noise_augmenter.py")]
PLUGINS.append(HERE / "plugins" / "bayesian_tuner.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", help="image folder, one subfolder per class")
    parser.add_argument("photos", nargs="*", help="photos to classify with the winner")
    parser.add_argument("--out", default=None, help="run directory (default runs/<time>)")
    parser.add_argument("--budget", default="10m", help="time budget, e.g. 90s, 10m, 1h")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    result = automl_core.search(
        args.images,
        time_budget=args.budget,
        architectures=["tiny_cnn", "baseline_cnn"],
        augmenters=["noise", "none"],
        tuner="bayesian_quick",
        plugins=PLUGINS,
        max_trials=args.trials,
        epochs=args.epochs,
        out=args.out,
    )
    for rank, trial in enumerate(result.leaderboard, 1):
        print(
            f"{rank}. trial {trial.trial_id} {trial.architecture} + {trial.augmenter}: "
            f"val_accuracy {trial.val_accuracy:.3f}"
        )
    print(f"run directory: {result.run_dir}")
    print(f"report: {result.report}")

    model = automl_core.load(result.run_dir)  # the same winner, as a later script loads it
    print(f"winner classes: {', '.join(model.classes)}; input {model.input_size}px")
    for prediction in result.predict(args.photos or [args.images], top_k=1)[:5]:
        top = prediction["top"][0]
        print(f"{prediction['image']}: {top['class']} ({top['probability']:.2f})")


if __name__ == "__main__":
    main()
