"""The built-in ``automl`` subcommands, contributed like any plugin's: ``search``, ``plugins``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from copy import copy
from pathlib import Path
from typing import Any

from automl_core import hookimpl
from automl_core.cli.main import REGISTRY
from automl_core.engine import settings
from automl_core.engine.settings import SETTINGS, SearchConfig, Setting, format_duration
from automl_core.errors import UsageError
from automl_core.rundir import RunDir

REGISTRIES = {
    "dataset": "datasets",
    "architectures": "architectures",
    "augmenters": "augmenters",
    "tuner": "tuners",
    "executor": "executors",
    "export": "exporters",
}
"""The settings whose values name registered components, and the kind they name."""
DEMO = {"time_budget": 100.0, "architectures": ["airbench", "baseline_cnn", "resnet"]}
"""The demo: the candidates that train well from scratch on 800 tiny photos."""


@hookimpl
def register_commands(subcommands):
    search = subcommands.add_parser(
        "search",
        help="search for the best model for an image folder",
        description="Try candidate models on an image folder (one subfolder per class), "
        "rank them and save the winner.",
    )
    search.add_argument(
        "source", nargs="?", metavar="DIR", help="image folder, one subfolder per class"
    )
    search.add_argument(
        "--demo",
        action="store_true",
        help="search the bundled CIFAR-10 demo set (architectures "
        f"{','.join(DEMO['architectures'])}, time budget "
        f"{format_duration(DEMO['time_budget'])}, unless given)",
    )
    search.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted search with its saved settings (--max-trials and "
        "--time-budget may change)",
    )
    for setting in SETTINGS.values():
        add_setting_option(search, setting)
    display = search.add_mutually_exclusive_group()
    display.add_argument(
        "-q", "--quiet", action="store_true", help="no live view or leaderboard on the terminal"
    )
    display.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="a line for every epoch of every trial (a terminal's live view shows the epochs "
        "without it)",
    )
    search.set_defaults(handler=run_search)

    plugins = subcommands.add_parser("plugins", help="list plugins and what each registered")
    plugins.set_defaults(handler=list_plugins)


def add_setting_option(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """The option for a search setting, as declared in ``automl_core.engine.settings``;
    the help of one that names components lists the registered names."""
    if setting.convert is settings.boolean:
        spelling = {"action": argparse.BooleanOptionalAction}
    elif setting.choices is not None:
        spelling = {"choices": setting.choices}
    else:
        spelling = {"type": argument_type(setting.convert), "metavar": setting.metavar}
    kind = REGISTRIES.get(setting.name)
    help_text = setting.help_text
    if kind is not None:
        help_text = (
            f"{setting.help}; registered: %(registered)s (default: {setting.described_default})"
        )
    action = parser.add_argument(
        setting.flag, default=copy(setting.default), help=help_text, **spelling
    )
    setattr(action, REGISTRY, kind)


def run_search(args: argparse.Namespace) -> int:
    from automl_core.data.scan import scan
    from automl_core.engine.search import resume, search
    from automl_core.reporting.live import RichReporter
    from automl_core.results.export import exporters_for

    if not args.quiet:
        args.plugins.manager.register(RichReporter(verbose=args.verbose), name="rich-report")
    if args.resume:
        if args.source or args.demo:
            raise UsageError("--resume continues a saved search: give no folder or --demo")
        warn_foreign_plugins(RunDir(Path(args.resume)))
        run = resume(
            args.resume, args.plugins, max_trials=args.max_trials, time_budget=args.time_budget
        )
        return _exit_code(run)
    if args.demo == bool(args.source):
        raise UsageError("give an image folder to search, or --demo (not both)")
    if args.test:
        scan(args.test)  # a missing or empty test folder fails now, not after the search
    values = {name: getattr(args, name) for name in SETTINGS}
    if args.demo:
        if values["time_budget"] is None and values["max_trials"] is None:
            values["time_budget"] = DEMO["time_budget"]
        if values["architectures"] == SETTINGS["architectures"].default:
            values["architectures"] = DEMO["architectures"]
    source = str(demo_dir()) if args.demo else args.source
    config = SearchConfig(source, plugins=args.plugins.sources, **values)
    exporters_for(args.plugins, config.export, config.quantize)  # a typo fails before training
    return _exit_code(search(config, args.plugins))


def warn_foreign_plugins(run_dir: RunDir) -> None:
    """Warn, before they are imported, that resuming runs the plugins a run directory
    lists when another user owns it: a run directory is code you trust."""
    if not run_dir.config.is_file():
        return  # resume says what is wrong
    owners = {os.stat(path).st_uid for path in (run_dir.path, run_dir.config)} - {os.getuid()}
    plugins = run_dir.read_config().get("plugins") or []
    if owners and plugins:
        print(
            f"automl: warning: {str(run_dir.path)!r} belongs to another user (uid "
            f"{', '.join(map(str, sorted(owners)))}); resuming imports its plugins, which run "
            f"as your code: {', '.join(plugins)}. Resume only run directories you trust.",
            file=sys.stderr,
        )


def _exit_code(run) -> int:
    """130 for a search the user interrupted, 1 when no trial completed, else 0."""
    if run.interrupted:
        return 130
    return 0 if run.leaderboard else 1


def add_quantize_option(parser: argparse.ArgumentParser) -> None:
    """``--quantize MODE``, shared by ``search --export`` and ``export``."""
    add_setting_option(parser, SETTINGS["quantize"])


def list_plugins(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from automl_core.reporting.live import stdout_console

    plugins = args.plugins
    table = Table(title="automl plugins")
    for column in ("plugin", "kind", "names"):
        table.add_column(column)
    for plugin in plugins.names():
        for kind, registry in plugins.registries.items():
            names = [c.name for c in registry.components.values() if c.plugin == plugin]
            if names:
                table.add_row(escape(plugin), kind, escape(", ".join(names)))
    console = stdout_console()
    console.print(table)
    for failure in plugins.failures:
        console.print(f"[red]{escape(str(failure))}[/]")
    return 0


def demo_dir() -> Path:
    """The bundled demo set: 10 CIFAR-10 classes x 100 real 32x32 photos."""
    import automl_plugins

    return Path(automl_plugins.__file__).parent / "demo_data"


def argument_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """A setting's check as an argparse ``type``: its error becomes argparse's one line."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except UsageError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


positive_int = argument_type(settings.positive_int)
patterns = argument_type(settings.patterns)
"""Argparse types for other commands' options (``automl export``)."""
