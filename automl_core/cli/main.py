"""``automl``: parse, load plugins, hand over to a subcommand. Thin by design.

Nothing here imports TensorFlow: subcommands import what they need when they run.
"""

from __future__ import annotations

import argparse
import os
import sys

from automl_core import __version__
from automl_core.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_common_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every command accepts, before or after the subcommand's name."""
    parser.add_argument(
        "-p",
        "--plugin",
        dest="plugin_sources",
        action="append",
        metavar="PLUGIN",
        default=argparse.SUPPRESS,
        help="load a plugin from a .py file or an importable module (repeatable)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks instead of one-line errors",
    )
    return parser


def build_parser(plugins) -> Parser:
    parser = add_common_options(
        Parser(prog="automl", description="Find the best image classifier for a folder of images.")
    )
    parser.set_defaults(plugin_sources=[], debug=False, handler=None)
    parser.add_argument("--version", action="version", version=f"automl {__version__}")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND")
    plugins.hook.register_commands(subcommands=subcommands)
    for command in subcommands.choices.values():
        add_common_options(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    early, _ = add_common_options(Parser(add_help=False)).parse_known_args(argv)
    debug = getattr(early, "debug", False)
    try:
        from automl_core.plugin.manager import load_plugins

        plugins = load_plugins(getattr(early, "plugin_sources", []))
        for failure in plugins.failures:
            print(f"automl: warning: {failure}", file=sys.stderr)
        parser = build_parser(plugins)
        args = parser.parse_args(argv)
        if args.handler is None:
            parser.print_help()
            return 0
        args.plugins = plugins
        return args.handler(args) or 0
    except UsageError as error:
        if debug:
            raise
        print(f"automl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("automl: interrupted", file=sys.stderr)
        return 130
