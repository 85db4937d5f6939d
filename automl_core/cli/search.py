"""The built-in ``automl`` subcommands, contributed like any plugin's: ``search``, ``plugins``."""

from __future__ import annotations

import argparse
from pathlib import Path

from automl_core import hookimpl
from automl_core.errors import UsageError


@hookimpl
def register_commands(subcommands):
    from automl_core.engine.run import PRECISIONS

    search = subcommands.add_parser(
        "search",
        help="search for the best model for an image folder",
        description="Try candidate models on an image folder (one subfolder per class), "
        "rank them and save the winner.",
    )
    search.add_argument(
        "source", nargs="?", metavar="DIR", help="image folder, one subfolder per class"
    )
    search.add_argument("--demo", action="store_true", help="search the bundled CIFAR-10 demo set")
    search.add_argument(
        "--max-trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="most candidates to train (default: as many as the time budget allows)",
    )
    search.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        metavar="N",
        help="most epochs per trial; early stopping may end sooner (default 20)",
    )
    search.add_argument(
        "--architectures",
        type=patterns,
        default=["*"],
        metavar="PATTERN,...",
        help="architectures to try, shell patterns (default: all)",
    )
    search.add_argument(
        "--augmenters",
        type=patterns,
        default=["*"],
        metavar="PATTERN,...",
        help="augmenters to try, shell patterns (default: all)",
    )
    search.add_argument(
        "--tuner", default="random", metavar="NAME", help="search strategy (default random)"
    )
    search.add_argument(
        "--dataset",
        default="image_folder",
        metavar="NAME",
        help="dataset loader (default image_folder)",
    )
    search.add_argument(
        "--out",
        default=None,
        metavar="RUN_DIR",
        help="run directory (default runs/<timestamp>, linked as runs/latest)",
    )
    search.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    search.add_argument(
        "--val-split",
        type=fraction,
        default=None,
        metavar="F",
        help="share of each class held out for validation (default 0.2, at most 5,000 "
        "images in all)",
    )
    search.add_argument(
        "--test",
        default=None,
        metavar="DIR",
        help="a separate test folder (class subfolders) to score the winner on",
    )
    search.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="PX",
        help="side images are resized to (default: the folder's typical size, at most 128)",
    )
    search.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="images per step (default: 32 for small data, up to 256 for large)",
    )
    search.add_argument(
        "--patience",
        type=non_negative_int,
        default=5,
        metavar="N",
        help="epochs without improvement before a trial stops early (default 5)",
    )
    search.add_argument("--objective", choices=["val_accuracy", "val_loss"], default="val_accuracy")
    search.add_argument(
        "--max-failures",
        type=positive_int,
        default=5,
        metavar="N",
        help="stop after this many failed trials in a row (default 5)",
    )
    search.add_argument(
        "--time-budget",
        type=duration,
        default=None,
        metavar="DURATION",
        help="stop the whole search within this time, e.g. 90s, 30m, 2h; trials are cut at "
        "the deadline keeping their best epoch (default 30m, 100s with --demo, none when "
        "--max-trials is given)",
    )
    search.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="retrain the winner on train+validation (default: when the time budget allows)",
    )
    search.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted search with its saved settings (--max-trials may raise)",
    )
    search.add_argument(
        "--executor",
        default="local",
        metavar="NAME",
        help="where trials run: local (one process per trial, default), inline, ray",
    )
    search.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials at once on the CPU, sharing its cores (default 1); on GPUs, per GPU",
    )
    search.add_argument(
        "--devices",
        default=None,
        metavar="IDS",
        help="GPUs to use, e.g. 0,2 (default: all visible; honours CUDA_VISIBLE_DEVICES)",
    )
    search.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="mixed: float16 compute on GPUs, bfloat16 on CPUs; auto (default): bfloat16 on "
        "a CPU where a short probe (once per machine, cached) measures it clearly faster, for "
        "architectures declared mixed-precision safe, else float32. Saved models are float32",
    )
    search.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join with --executor ray (default: start a local one)",
    )
    search.add_argument(
        "--export",
        type=patterns,
        default=[],
        metavar="FORMAT,...",
        help="also export the winner to these formats and verify them (e.g. onnx,tflite)",
    )
    add_quantize_option(search)
    search.add_argument(
        "-q", "--quiet", action="store_true", help="no live view or leaderboard on the terminal"
    )
    search.set_defaults(handler=run_search)

    plugins = subcommands.add_parser("plugins", help="list plugins and what each registered")
    plugins.set_defaults(handler=list_plugins)


DEFAULT_TIME_BUDGET = 30 * 60.0
"""Seconds a search may take when neither --max-trials nor --time-budget is given."""
DEMO = {"time_budget": 100.0, "architectures": ["baseline_cnn", "resnet"]}
"""The demo: the two candidates that train well from scratch on 800 tiny photos."""


def run_search(args: argparse.Namespace) -> int:
    from automl_core.data.scan import scan
    from automl_core.engine.search import SearchConfig, resume, search
    from automl_core.reporting.live import RichReporter
    from automl_core.results.export import exporters_for

    if not args.quiet:
        args.plugins.manager.register(RichReporter(), name="rich-report")
    if args.resume:
        if args.source or args.demo:
            raise UsageError("--resume continues a saved search: give no folder or --demo")
        run = resume(
            args.resume, args.plugins, max_trials=args.max_trials, time_budget=args.time_budget
        )
        return _exit_code(run)
    if args.demo == bool(args.source):
        raise UsageError("give an image folder to search, or --demo (not both)")
    if args.test:
        scan(args.test)  # a missing or empty test folder fails now, not after the search
    time_budget = args.time_budget
    if time_budget is None and args.max_trials is None:
        time_budget = DEMO["time_budget"] if args.demo else DEFAULT_TIME_BUDGET
    architectures = args.architectures
    if args.demo and architectures == ["*"]:
        architectures = DEMO["architectures"]
    config = SearchConfig(
        source=str(demo_dir()) if args.demo else args.source,
        dataset=args.dataset,
        architectures=architectures,
        augmenters=args.augmenters,
        tuner=args.tuner,
        executor=args.executor,
        max_trials=args.max_trials,
        time_budget=time_budget,
        refit=args.refit,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        val_split=args.val_split,
        test=args.test,
        image_size=args.image_size,
        seed=args.seed,
        objective=args.objective,
        max_failures=args.max_failures,
        workers=args.workers,
        devices=args.devices,
        precision=args.precision,
        ray_address=args.ray_address,
        out=args.out,
        plugins=args.plugins.sources,
        export=args.export,
        quantize=args.quantize,
    )
    exporters_for(args.plugins, config.export, config.quantize)  # a typo fails before training
    return _exit_code(search(config, args.plugins))


def _exit_code(run) -> int:
    """130 for a search the user interrupted, 1 when no trial completed, else 0."""
    if run.interrupted:
        return 130
    return 0 if run.leaderboard else 1


def add_quantize_option(parser: argparse.ArgumentParser) -> None:
    """``--quantize MODE``, shared by ``search --export`` and ``export``."""
    parser.add_argument(
        "--quantize",
        default=None,
        metavar="MODE",
        help="quantize the formats that support it; tflite: float16, int8 "
        "(calibrated on training images) or dynamic (dynamic-range)",
    )


def list_plugins(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    plugins = args.plugins
    table = Table(title="automl plugins")
    for column in ("plugin", "kind", "names"):
        table.add_column(column)
    for plugin in plugins.names():
        for kind, registry in plugins.registries.items():
            names = [c.name for c in registry.components.values() if c.plugin == plugin]
            if names:
                table.add_row(plugin, kind, ", ".join(names))
    console = Console()
    console.print(table)
    for failure in plugins.failures:
        console.print(f"[red]{failure}[/]")
    return 0


def demo_dir() -> Path:
    """The bundled demo set: 10 CIFAR-10 classes x 100 real 32x32 photos."""
    import automl_plugins

    return Path(automl_plugins.__file__).parent / "demo_data"


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def duration(text: str) -> float:
    from automl_core.engine.budget import parse_duration

    try:
        return parse_duration(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def patterns(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("needs at least one name or pattern")
    return items


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
