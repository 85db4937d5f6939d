"""``automl report RUN_DIR``, and the report files every search leaves in ``RUN_DIR/report/``.

A built-in plugin: it adds the command and, at the end of each search, writes the plots
and ``index.html`` from the run directory's files, the same way the command re-renders
any run, finished, failed or interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from automl_core import hookimpl
from automl_core.training.trial import COMPLETED

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun
    from automl_core.reporting.run_report import RunReport
    from automl_core.training.trial import TrialResult


@hookimpl
def register_commands(subcommands):
    report = subcommands.add_parser(
        "report",
        help="show a search's leaderboard and write its HTML report",
        description="Re-render any run directory (finished, failed or interrupted): the "
        "leaderboard in the terminal, plots and index.html in RUN_DIR/report/.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a search")
    output = report.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print every trial and the winner as JSON"
    )
    output.add_argument("--csv", action="store_true", help="print one CSV line per trial")
    report.set_defaults(handler=run_report)


@hookimpl(tryfirst=True)  # before the terminal reporter, so it can point at the page
def search_end(run: SearchRun, leaderboard: list[TrialResult]) -> None:
    try:
        write_report(run.run_dir.path)
    except Exception as error:  # the search and its winner are saved: never lose them here
        print(f"automl: warning: report not written: {error}", file=sys.stderr)


def write_report(run_dir: str | Path) -> Path:
    """Plots and ``index.html`` into ``RUN_DIR/report/``; the page's path."""
    from automl_core.reporting.html import write_html
    from automl_core.reporting.plots import write_plots
    from automl_core.reporting.run_report import load_report

    report = load_report(run_dir)
    return write_html(report, write_plots(report, report.run_dir.report))


def run_report(args: argparse.Namespace) -> int:
    from automl_core.reporting.run_report import load_report

    report = load_report(args.run_dir)
    if report.schema_mismatch:
        print(f"automl: warning: {report.schema_mismatch}: showing what it can", file=sys.stderr)
    if args.json or args.csv:
        sys.stdout.write(report.to_json() + "\n" if args.json else report.to_csv())
        return 0
    from automl_core.reporting.live import stdout_console

    console = stdout_console()
    print_report(report, console)
    console.print(f"report: {write_report(args.run_dir)}", markup=False)
    return 0


def print_report(report: RunReport, console) -> None:
    """The run's state, leaderboard, unfinished trials and test score, as rich output."""
    from rich.markup import escape

    from automl_core.reporting.live import budget_text, leaderboard_table, test_set_table

    console.print(
        f"[bold]{escape(str(report.run_dir.path))}[/]: {report.status}, "
        f"{budget_text(report.elapsed, report.time_budget)}; "
        f"{len(report.leaderboard)} of {len(report.trials)} trial(s) completed"
    )
    console.print(leaderboard_table(report.leaderboard, report.objective))
    if any(trial.macro_f1 is not None for trial in report.leaderboard):
        console.print(class_balance_table(report.leaderboard))
    for trial in report.leaderboard:
        if trial.folds:  # its candidate was validated on several folds (small data)
            console.print(
                f"trial {trial.trial_id} {trial.architecture}: {report.objective} "
                f"{trial.folds['mean']:.3f} ± {trial.folds['spread']:.3f} over "
                f"{len(trial.folds['scores'])} folds",
                markup=False,
            )
    for trial in report.trials:
        if trial.status != COMPLETED:
            reason = f": {trial.error}" if trial.error else ""
            console.print(
                f"trial {trial.trial_id} {trial.architecture} + {trial.augmenter}: "
                f"{trial.status}{reason}",
                markup=False,
            )
    winner = report.run_dir.winner.model
    if winner.is_file():
        console.print(f"winner: [bold]{escape(str(winner))}[/]")
    else:
        console.print("[red]no winner saved[/]")
    if report.test:
        console.print(test_set_table(report.test))
        if report.test.get("macro_f1") is not None:
            console.print(
                f"test balanced accuracy {report.test['balanced_accuracy']:.3f}, "
                f"macro-F1 {report.test['macro_f1']:.3f}"
            )


def class_balance_table(leaderboard: list[TrialResult]):
    """The ranked trials' class-balanced validation scores, and each one's weakest class
    (a trial from before these scores shows dashes)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from automl_core.reporting.html import number

    table = Table(title="Class balance (validation)", box=box.SIMPLE_HEAD)
    for column in ("#", "trial", "balanced acc", "macro-F1", "lowest recall"):
        table.add_column(column, justify="left" if column == "lowest recall" else "right")
    for rank, trial in enumerate(leaderboard, 1):
        recalls = {k: v for k, v in trial.per_class_recall.items() if v is not None}
        weakest = min(recalls, key=recalls.get) if recalls else None
        table.add_row(
            str(rank),
            trial.trial_id,
            number(trial.balanced_accuracy),
            number(trial.macro_f1),
            Text("-" if weakest is None else f"{recalls[weakest]:.3f} {weakest}"),
        )
    return table
