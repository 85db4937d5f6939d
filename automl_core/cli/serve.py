"""``automl export`` and ``automl predict``: take the winner out of the tool and use it."""

from __future__ import annotations

import argparse
import contextlib
import sys

from automl_core import hookimpl
from automl_core.cli.main import REGISTRY
from automl_core.cli.search import add_quantize_option, patterns, positive_int
from automl_core.errors import UsageError


@hookimpl
def register_commands(subcommands):
    export = subcommands.add_parser(
        "export",
        help="export a search's winner to another format and verify it",
        description="Export the winner of a finished search, run the artifact with its own "
        "runtime on the validation images, and record the check in the model card.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a finished search")
    formats = export.add_argument(
        "--format",
        "-f",
        dest="formats",
        type=patterns,
        required=True,
        metavar="FORMAT,...",
        help="the formats to write; registered: %(registered)s",
    )
    setattr(formats, REGISTRY, "exporters")
    add_quantize_option(export)
    export.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="the artifact to write: a file, or the SavedModel folder; a folder to write into "
        "if PATH ends in /, is a folder the artifact would not replace, or with several "
        "formats (default: RUN_DIR/winner/)",
    )
    export.set_defaults(handler=run_export)

    predict = subcommands.add_parser(
        "predict",
        help="classify images with an exported model",
        description="Classify image files (or every image in folders) with a .keras, .onnx "
        "or .tflite file, a SavedModel folder, or a run directory's winner. Images are "
        "streamed in batches; unreadable ones are skipped and listed on stderr.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help="a model file, SavedModel folder or folder `automl export -o` wrote, or a run "
        "directory (its winner/model.keras)",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="image files, or folders searched for images; unreadable ones are skipped",
    )
    predict.add_argument(
        "--top-k", type=positive_int, default=3, metavar="K", help="classes shown (default 3)"
    )
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of text")
    output.add_argument(
        "--csv",
        metavar="FILE",
        help="write a CSV file instead: path,label,probability,label_2,probability_2,...",
    )
    predict.set_defaults(handler=run_predict)


def run_export(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from automl_core.reporting.live import stdout_console
    from automl_core.results.export import export_formats, load_winner

    winner = load_winner(args.run_dir)
    records = export_formats(winner, args.formats, args.quantize, args.output, args.plugins)
    console = stdout_console()
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
    """Stream predictions to stdout or ``--csv``; 0 when any image was classified, else 2."""
    from rich.console import Console
    from rich.progress import Progress

    from automl_core.results.predict import (
        image_files,
        load_predictor,
        predict_files,
        write_csv,
        write_json,
        write_text,
    )

    files = image_files(args.images)
    predictor = load_predictor(args.model)
    top_k = min(args.top_k, len(predictor.classes))
    errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
    with (
        _output(args.csv) as stream,
        Progress(console=errors, disable=not (args.csv and errors.is_terminal)) as progress,
    ):
        task = progress.add_task("classifying", total=len(files))

        def skip(path, reason: str) -> None:
            errors.print(f"automl: warning: cannot decode image {str(path)!r}: {reason}; skipped")
            progress.advance(task)

        def advancing(results):
            for result in results:
                progress.advance(task)
                yield result

        results = advancing(predict_files(predictor, files, top_k, skip))
        if args.csv:
            count = write_csv(results, stream, top_k)
        else:
            count = (write_json if args.json else write_text)(results, stream)
    if args.csv:
        print(f"{count} of {len(files)} images classified into {args.csv}")
    return 0 if count else 2


def _output(csv: str | None):
    """The stream results go to: stdout, or the ``--csv`` file opened for writing."""
    if csv is None:
        return contextlib.nullcontext(sys.stdout)
    try:
        return open(csv, "w", newline="", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {csv!r}: {error.strerror or error}") from error
