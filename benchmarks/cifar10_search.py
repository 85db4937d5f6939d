"""The headline benchmark: `automl search` on CIFAR-10 within a time budget.

Unpacks ../shared/datasets/cifar10-train.tar.gz, holds out a stratified 10,000-image split
of its own, searches the other 40,000 with each --time-budget, then scores the exported
winner on the held-out images. Prints, per budget: held-out accuracy, wall time, trials
run, and when the search first passed 69.5% validation accuracy (the classic CNN after 10
epochs). Targets: 85% at 10 minutes, 90% at 30 minutes on a 2-core machine.

    python benchmarks/cifar10_search.py                       # 10m and 30m
    python benchmarks/cifar10_search.py --budgets 10m --keep  # one budget, keep files
    python benchmarks/cifar10_search.py --budgets 10m --reference --precision float32
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

from automl_core.engine.settings import parse_duration
from automl_core.execution.worker import end_with_parent

CLASSIC_CNN_ACCURACY = 0.695
REFERENCE = Path(__file__).with_name("reference_recipe.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=cifar10_data.ARCHIVE)
    parser.add_argument("--budgets", default="10m,30m", help="comma-separated time budgets")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--precision", choices=("float32", "auto"), default="auto", help="for both sides"
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also run reference_recipe.py with each budget's wall time",
    )
    parser.add_argument("extra", nargs="*", help="more `automl search` flags, after --")
    args = parser.parse_args()
    from automl_core.training.precision import cpu_has_bfloat16_matrix_units, cpu_info

    print(f"CPU: {cpu_info()[0]}; AMX: {'yes' if cpu_has_bfloat16_matrix_units() else 'no'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="automl-cifar10-"))
    try:
        search_dir, holdout_dir = cifar10_data.prepare(args.archive, work)
        rows = []
        for budget in args.budgets.split(","):
            row = run(
                budget, search_dir, holdout_dir, work, [*args.extra, "--precision", args.precision]
            )
            if args.reference:  # in the precision the search trained in, measured or forced
                precision = "bfloat16" if row["bfloat16"] else "float32"
                row["reference"] = reference(parse_duration(budget), precision, work)
            rows.append(row | {"precision": args.precision})
        print_table(rows)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(budget: str, search_dir: Path, holdout_dir: Path, work: Path, extra: list[str]) -> dict:
    run_dir = work / f"run-{budget}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "automl_core.cli",
        "search",
        str(search_dir),
        "--time-budget",
        budget,
        "--out",
        str(run_dir),
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    started = time.time()
    # the search ends with this script: an interrupted benchmark leaves none running on
    subprocess.run(command, check=True, preexec_fn=partial(end_with_parent, signal.SIGTERM))
    wall = time.time() - started
    seconds = parse_duration(budget)
    trials = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*/metrics.json")]
    searched = [t for t in trials if t["trial_id"] != "refit"]
    passed = [
        t["ended_at"] - started
        for t in searched
        if (t.get("val_accuracy") or 0) >= CLASSIC_CNN_ACCURACY
    ]
    winner = json.loads((run_dir / "winner" / "winner.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    precision = json.loads((run_dir / "precision.json").read_text())
    print("policy notes:", *state.get("notes", []), sep="\n  ")
    return {
        "budget": budget,
        "holdout_accuracy": holdout_accuracy(run_dir, holdout_dir),
        "wall_seconds": wall,
        "overshoot": wall / seconds - 1,
        "trials": len(searched),
        "failed": sum(t["status"] == "failed" for t in searched),
        "passed_69.5_at": min(passed, default=None),
        "winner": f"{winner['architecture']} + {winner['augmenter']}",
        "val_accuracy": winner["val_accuracy"],
        "refit": winner["refit"] is not None,
        "tta": winner["test_time_augmentation"]["kept"],
        "bfloat16": precision["architectures"].get(winner["architecture"]) == "mixed_bfloat16",
        "stages": [
            (t["trial_id"], t["architecture"], t.get("stage"), t.get("val_accuracy"))
            for t in sorted(searched, key=lambda t: t["trial_id"])
        ],
    }


def holdout_accuracy(run_dir: Path, holdout_dir: Path) -> float:
    """The exported winner (winner/model.keras) on the held-out images."""
    from automl_core.results.predict import load_predictor

    predictor = load_predictor(run_dir / "winner" / "model.keras")
    images, truth, names = cifar10_data.load(holdout_dir)
    labels = json.loads((run_dir / "winner" / "labels.json").read_text())
    probabilities = predictor.predict(images)
    predicted = np.asarray([names.index(labels[i]) for i in np.argmax(probabilities, axis=1)])
    return float(np.mean(predicted == truth))


def reference(seconds: float, precision: str, work: Path) -> dict:
    """reference_recipe.py planned for ``seconds`` of wall time, in its own process."""
    out = work / f"reference-{seconds:.0f}s.json"
    command = [sys.executable, str(REFERENCE), "--seconds", str(seconds), "--precision"]
    command += [precision, "--work", str(work), "--json", str(out)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, preexec_fn=partial(end_with_parent, signal.SIGTERM))
    return json.loads(out.read_text())


def print_table(rows: list[dict]) -> None:
    for r in rows:
        print(
            f"{r['budget']}: trials (id, architecture, stage, val acc):", *r["stages"], sep="\n  "
        )
    print()
    print(
        "| budget | precision | search held-out acc | reference held-out acc (epochs) | "
        "search wall (overshoot) | trials (failed) | passed 69.5% at | winner | val acc | "
        "refit | flip TTA |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        passed = "never" if r["passed_69.5_at"] is None else f"{r['passed_69.5_at']:.0f} s"
        ref = r.get("reference")
        ref_text = f"{ref['holdout_accuracy']:.4f} ({ref['epochs']})" if ref else "-"
        print(
            f"| {r['budget']} | {r['precision']} | {r['holdout_accuracy']:.4f} | {ref_text} | "
            f"{r['wall_seconds']:.0f} s ({r['overshoot']:+.1%}) | {r['trials']} "
            f"({r['failed']}) | {passed} | {r['winner']} | {r['val_accuracy']:.4f} | "
            f"{r['refit']} | {r['tta']} |"
        )


if __name__ == "__main__":
    main()
