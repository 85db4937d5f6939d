"""``automl export`` and ``automl predict``: take the winner out of the tool and use it."""

from __future__ import annotations

import argparse
import json

from automl_core import hookimpl
from automl_core.cli.search import add_quantize_option, patterns, positive_int


@hookimpl
def register_commands(subcommands):
    export = subcommands.add_parser(
        "export",
        help="export a search's winner to another format and verify it",
        description="Export the winner of a finished search, run the artifact with its own "
        "runtime on the validation images, and record the check in the model card.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a finished search")
    export.add_argument(
        "--format",
        "-f",
        dest="formats",
        type=patterns,
        required=True,
        metavar="FORMAT,...",
        help="keras, saved_model, onnx, tflite (see `automl plugins`)",
    )
    add_quantize_option(export)
    export.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="DIR",
        help="folder to write into (default RUN_DIR/winner); labels.json goes beside",
    )
    export.set_defaults(handler=run_export)

    predict = subcommands.add_parser(
        "predict",
        help="classify images with an exported model",
        description="Classify image files (or every image in folders) with a .keras, .onnx "
        "or .tflite file, a SavedModel folder, or a run directory's winner.",
    )
    predict.add_argument("model", metavar="MODEL", help="model file, SavedModel or run dir")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    predict.add_argument(
        "--top-k", type=positive_int, default=3, metavar="K", help="classes shown (default 3)"
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(handler=run_predict)


def run_export(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from automl_core.results.export import export_formats, load_winner

    winner = load_winner(args.run_dir)
    records = export_formats(winner, args.formats, args.quantize, args.output, args.plugins)
    console = Console()
    for key, record in records.items():
        change = record.get("accuracy_change")
        console.print(
            f"[green]{escape(key)}[/]: {escape(str(record['path']))} verified with "
            f"{record['runtime']} on "
            f"{record['images']} validation images: top-1 agreement "
            f"{record['top1_agreement']:.1%}, max prob diff {record['max_abs_diff']:.2g}"
            + ("" if change is None else f", accuracy change {change:+.1%}")
        )
    console.print(f"model card: {winner.dir.card_md}", markup=False)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from automl_core.results.predict import classify, image_files, load_predictor

    files = image_files(args.images)
    predictor = load_predictor(args.model)
    results = classify(predictor, files, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
        print(f"{result['image']}: {top}")
    return 0
