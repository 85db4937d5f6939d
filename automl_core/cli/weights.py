"""``automl weights``: the pretrained weights files architectures load, in Keras's cache.

``list`` shows each file, its size and whether it is cached; ``fetch`` downloads the
missing ones, checked; ``import FILE --for NAME`` puts weights of your own in place once
they load into the architecture. The work is ``automl_core.training.weights``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from automl_core import hookimpl
from automl_core.cli.search import add_setting_option
from automl_core.engine.settings import SETTINGS
from automl_core.errors import UsageError
from automl_core.plugin.registry import Component, Registry
from automl_core.training.weights import (
    MIRROR_ENV,
    OFFLINE_ENV,
    WeightsFile,
    fetch,
    install,
    is_offline,
    mirror_url,
    models_dir,
)

ACTIONS = ("list", "fetch", "import")


@hookimpl
def register_commands(subcommands):
    parser = subcommands.add_parser(
        "weights",
        help="list, fetch or import the pretrained weights files of architectures",
        description="The pretrained weights files architectures load (the backbones' "
        "ImageNet weights), in Keras's cache ($KERAS_HOME/models, default ~/.keras/models). "
        "A search fetches the ones it needs itself; this command lists them, fetches them "
        "ahead (say, before going offline) and imports your own.",
        usage="automl weights list [NAME ...] | fetch NAME ... [--weights-mirror URL] | "
        "import FILE --for NAME",
    )
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument(
        "items",
        nargs="*",
        metavar="NAME|FILE",
        help="list, fetch: architectures, shell patterns (list: default all); import: the "
        "weights file (.weights.h5, .h5 or .keras)",
    )
    parser.add_argument(
        "--for",
        dest="architecture",
        metavar="NAME",
        help="import: the architecture the file holds weights for; the file must load into "
        "it, and is saved under each of its files' names in the cache",
    )
    add_setting_option(parser, SETTINGS["weights_mirror"])
    parser.set_defaults(handler=run_weights)


def run_weights(args: argparse.Namespace) -> int:
    registry = args.plugins["architectures"]
    if args.action == "import":
        if len(args.items) != 1 or not args.architecture:
            raise UsageError(
                "import takes one file and --for: automl weights import FILE --for NAME"
            )
        source = Path(args.items[0])
        if not source.is_file():
            raise UsageError(f"{str(source)!r}: no such file")
        for file in declared(registry.get(args.architecture), registry):
            print(f"{args.architecture}: imported {source} as {install(file, source)}")
        return 0
    if args.architecture:
        raise UsageError("--for goes with import: automl weights import FILE --for NAME")
    if args.action == "list":
        print_list(_with_weights(registry, args.items or ["*"]))
        return 0
    if not args.items:
        raise UsageError("name the architectures to fetch: shell patterns, e.g. 'mobilenet*'")
    if is_offline(None):
        raise UsageError(f"offline ({OFFLINE_ENV} is set): nothing is downloaded; unset it")
    mirror = mirror_url(args.weights_mirror)
    for component in _with_weights(registry, args.items):
        for file in component.info["weights"]:
            print(f"{component.name}: {fetch(file, mirror)}")
    return 0


def declared(component: Component, registry: Registry) -> tuple[WeightsFile, ...]:
    """The weights files ``component`` declares; a ``UsageError`` when it has none."""
    files = component.info.get("weights", ())
    if not files:
        raise UsageError(
            f"{component.name!r} loads no pretrained weights file (those that do: "
            f"{', '.join(c.name for c in _with_weights(registry, ['*']))})"
        )
    return files


def _with_weights(registry: Registry, patterns: list[str]) -> list[Component]:
    """The architectures matching ``patterns`` that declare weights files; at least one."""
    chosen = [c for c in registry.select(patterns) if c.info.get("weights")]
    if not chosen:
        raise UsageError(f"no architecture matching {', '.join(patterns)} loads pretrained weights")
    return chosen


def print_list(components: list[Component]) -> None:
    """One line per file: the first architecture that loads it, the file, its size in the
    cache, cached or not, its check."""
    rows = [("architecture", "file", "size", "cached", "checked by")]
    listed: set[Path] = set()
    for component in components:
        for file in component.info["weights"]:
            if file.path in listed:
                continue
            listed.add(file.path)
            cached = file.path.is_file()
            size = f"{file.path.stat().st_size / 1e6:.1f} MB" if cached else "-"
            check = "hash" if file.file_hash else "loading"
            rows.append((component.name, file.name, size, "yes" if cached else "no", check))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"Keras cache: {models_dir()}")
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    mirror = mirror_url(None)
    source = f"the mirror {mirror} ({MIRROR_ENV})" if mirror else "the published URLs"
    print(f"downloads from {source}" + (f"; offline ({OFFLINE_ENV})" if is_offline(None) else ""))
