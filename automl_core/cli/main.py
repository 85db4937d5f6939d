"""``automl``: parse, load plugins, hand over to a subcommand. Thin by design.

Nothing here imports TensorFlow: subcommands import what they need when they run.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import sys

from automl_core import __version__
from automl_core.errors import UsageError
from automl_core.training.runtime import DEBUG_ENV, hide_startup_notices_on_import


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
        help="show full tracebacks instead of one-line errors, and TensorFlow's start-up notices",
    )
    return parser


COMMAND_ORDER = ("search", "inspect", "report", "export", "predict", "plugins", "weights")
"""The built-in commands in the order people use them; others (plugins') follow."""
REGISTRY = "registry"
"""An option's attribute naming the kind of component its values name: its help's
``%(registered)s`` lists the registered names."""


def build_parser(plugins) -> Parser:
    parser = add_common_options(
        Parser(prog="automl", description="Find the best image classifier for a folder of images.")
    )
    parser.set_defaults(plugin_sources=[], debug=False, handler=None)
    parser.add_argument("--version", action="version", version=f"automl {__version__}")
    subcommands = parser.add_subparsers(
        title="commands", metavar="COMMAND", help="`automl COMMAND --help` tells more"
    )
    plugins.hook.register_commands(subcommands=subcommands)
    order_commands(subcommands)
    for command in subcommands.choices.values():
        add_common_options(command)
        for action in command._actions:
            if getattr(action, REGISTRY, None):
                action.registered = ", ".join(plugins[getattr(action, REGISTRY)].names())
    return parser


def order_commands(subcommands: argparse._SubParsersAction) -> None:
    """Sort the commands as ``COMMAND_ORDER`` lists them, in the help and everywhere."""
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    subcommands._choices_actions.sort(key=lambda action: rank.get(action.dest, len(rank)))
    commands = sorted(subcommands.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    subcommands.choices.clear()
    subcommands.choices.update(commands)


FIXES = {
    errno.EACCES: "permission denied: fix its permissions (chmod, chown) or move it away",
    errno.EPERM: "operation not permitted: fix its permissions (chmod, chown) or move it away",
    errno.ENOENT: "does not exist: check the path",
    errno.ENOTDIR: "is not a folder (or goes through a file): check the path",
    errno.EISDIR: "is a folder where a file is expected: give a file",
    errno.ELOOP: "is a loop of links: fix or remove the link",
    errno.EROFS: "is on a read-only file system: choose a writable place",
    errno.ENOSPC: "no space left on the device: free some space and run again "
    "(continue a search with --resume RUN_DIR)",
    errno.EDQUOT: "disk quota exceeded: free some space and run again "
    "(continue a search with --resume RUN_DIR)",
}
"""What to do about an ``OSError``, by its ``errno``."""


def describe_input_error(error: OSError | UnicodeError) -> str:
    """One line naming the file behind a file-system or text-encoding error and the fix."""
    if isinstance(error, UnicodeEncodeError):
        return (
            f"{error.object!r}: a name that is not valid {error.encoding.upper()}: rename it "
            "(e.g. convmv -f latin1 -t utf8) or move it away"
        )
    if isinstance(error, UnicodeDecodeError):
        name = _file_in_traceback(error)
        bad = error.object[error.start : error.end]
        return (
            f"{f'{name!r} is' if name else 'a file is'} not {error.encoding.upper()} text "
            f"({bad!r} at byte {error.start}): save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        )
    name = error.filename or _file_in_traceback(error)
    fix = FIXES.get(error.errno, error.strerror or str(error))
    return f"{name!r}: {fix}" if name else fix


def _file_in_traceback(error: BaseException) -> str | None:
    """The name of the innermost file object in the frames ``error`` came through: the
    file being read or written when it was raised."""
    name, frame = None, error.__traceback__
    while frame is not None:
        for value in frame.tb_frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                name = value.name
        frame = frame.tb_next
    return name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if isinstance(sys.stdout, io.TextIOWrapper):  # a file name that is not UTF-8 prints
        sys.stdout.reconfigure(errors="backslashreplace")  # as stderr shows it: \udcff
    early, _ = add_common_options(Parser(add_help=False)).parse_known_args(argv)
    debug = getattr(early, "debug", False)
    if debug:  # TensorFlow's start-up notices too, in trial processes as well
        os.environ[DEBUG_ENV] = "1"
    hide_startup_notices_on_import()
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
    except (OSError, UnicodeDecodeError, UnicodeEncodeError) as error:
        if debug:
            raise
        print(f"automl: error: {describe_input_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("automl: interrupted", file=sys.stderr)
        return 130
