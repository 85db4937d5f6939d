"""The terminal report: a live dashboard while searching, the leaderboard at the end.

The reporter is a plugin like any other: it implements the observer hooks. On a
terminal it keeps a live dashboard (budget, one row per trial with its epoch bar, the
best so far, busy devices); elsewhere (CI, pipes) it prints plain lines, never wrapped,
a line per epoch only when asked to be verbose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from automl_core import hookimpl
from automl_core.rundir import read_json
from automl_core.training.space import ARCHITECTURE, AUGMENTER, short_name
from automl_core.training.trial import COMPLETED, FAILED, RUNNING, STOPPED

SHOW_SKIPPED = 10
"""Skipped files listed by name at the start; all of them are in ``dataset.json``."""
SHOW_CLASSES = 10
"""Class names listed at the start; all of them are in ``dataset.json``."""
SHOW_TRIALS = 12
"""Trials the live table shows: every running one, then the latest that ended."""
PLAIN_WIDTH = 100
"""Columns tables take when output is not a terminal (text lines are not wrapped)."""
HEADERS = {"balanced_accuracy": "bal_acc"}
"""Objectives' short names as leaderboard column headers."""
STATUS_STYLE = {RUNNING: "cyan", COMPLETED: "green", FAILED: "red", STOPPED: "yellow"}

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun
    from automl_core.training.trial import TrialResult, TrialSpec


@dataclass
class _Row:
    """One trial as the dashboard shows it."""

    spec: TrialSpec
    started: float
    status: str = RUNNING
    epoch: int = 0
    val_accuracy: float | None = None
    best: float | None = None
    ended: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended or time.time()) - self.started


class RichReporter:
    """Shows a search as it happens; register an instance with the plugin manager."""

    def __init__(self, console: Console | None = None, verbose: bool = False):
        self.console = console or stdout_console()
        self.verbose = verbose
        """A line for every epoch (a live dashboard shows them anyway)."""
        self.live: Live | None = None
        self.run: SearchRun | None = None
        self.rows: dict[str, _Row] = {}

    @property
    def plain(self) -> bool:
        """Plain lines instead of a live dashboard: stdout is not a terminal."""
        return not self.console.is_terminal

    @hookimpl
    def search_start(self, run: SearchRun) -> None:
        summary = run.dataset_summary
        skipped = len(summary["skipped"])
        classes = summary["classes"]
        self.console.print(
            f"[bold]automl search[/] {escape(summary['source'])}: {len(classes)} classes "
            f"({escape(', '.join(classes[:SHOW_CLASSES]))}"
            f"{', ...' if len(classes) > SHOW_CLASSES else ''}), "
            f"{summary['train']} train / {summary['val']} val images at "
            f"{summary['image_shape'][0]}x{summary['image_shape'][1]}"
            + (f", {skipped} unreadable file(s) skipped" if skipped else ""),
            soft_wrap=True,
        )
        for item in summary["skipped"][:SHOW_SKIPPED]:
            self.console.print(f"  skipped {item['path']}: {item['reason']}", markup=False)
        if skipped > SHOW_SKIPPED:
            self.console.print(f"  ... and {skipped - SHOW_SKIPPED} more in dataset.json")
        for warning in summary.get("warnings", []):
            self.console.print(f"  warning: {warning}", markup=False)
        limit = (
            f"up to {run.config.max_trials} trials" if run.config.max_trials else "no trial limit"
        )
        self.console.print(
            f"candidates: {', '.join(run.architectures)}; augmenters: "
            f"{', '.join(run.augmenters)}; {limit}, {run.config.epochs} epochs at most each; "
            f"{budget_text(run.elapsed, run.config.time_budget)}; "
            f"run directory {run.run_dir.path}",
            markup=False,
        )
        self.console.print(
            f"precision: {read_json(run.run_dir.precision)['summary']}", markup=False
        )
        if run.results:
            self.console.print(f"resuming: {len(run.results)} trial(s) already done")
        self.run = run
        if not self.plain:
            self.live = Live(
                console=self.console, get_renderable=self.dashboard, refresh_per_second=4
            )
            self.live.start()

    @hookimpl
    def trial_start(self, run: SearchRun, spec: TrialSpec) -> None:
        self.rows[spec.trial_id] = _Row(spec, started=time.time())
        if self.plain:
            origin = (
                f", continuing trial {Path(spec.warm_start).parent.name} from epoch "
                f"{spec.initial_epoch}"
                if spec.warm_start
                else ""
            )
            self.console.print(
                f"trial {spec.trial_id} started: {spec.architecture} + {spec.augmenter}, "
                f"{_plan_text(spec)}{origin}",
                markup=False,
                soft_wrap=True,
            )

    @hookimpl
    def trial_epoch_end(self, run: SearchRun, spec: TrialSpec, epoch: int, logs: dict) -> None:
        row = self.rows.get(spec.trial_id)
        if row is None:
            return
        row.epoch = epoch
        row.val_accuracy = logs.get("val_accuracy")
        if row.val_accuracy is not None:
            row.best = max(row.best or 0.0, row.val_accuracy)
        if self.verbose:
            self.console.print(
                f"trial {spec.trial_id} epoch {epoch}/{spec.epochs}: val_acc "
                f"{_value(row.val_accuracy)} (trial best {_value(row.best)}, search best "
                f"{_best(run)}) on {spec.device}; "
                + budget_text(run.elapsed, run.config.time_budget),
                markup=False,
                soft_wrap=True,
            )

    @hookimpl
    def trial_end(self, run: SearchRun, result: TrialResult) -> None:
        row = self.rows.get(result.trial_id)
        if row is not None:
            row.status, row.ended = result.status, time.time()
            if result.val_accuracy is not None:
                row.val_accuracy = row.best = result.val_accuracy
        if result.status == COMPLETED:
            outcome = (
                f"val_acc {result.val_accuracy:.3f} val_loss {result.val_loss:.3f} "
                f"in {result.epochs_run} epochs, {result.train_seconds:.1f}s"
            )
        elif result.status == STOPPED:
            outcome = "[yellow]stopped[/]: runs again on --resume"
        else:
            outcome = f"[red]failed[/]: {escape(str(result.error))}"
        if self.plain or result.status != COMPLETED:  # the dashboard shows the rest
            self.console.print(
                f"trial {result.trial_id} {escape(result.architecture)} + "
                f"{escape(result.augmenter)}: {outcome}",
                soft_wrap=True,
            )

    @hookimpl
    def search_end(self, run: SearchRun, leaderboard: list[TrialResult]) -> None:
        if self.live is not None:
            self.live.stop()  # the last frame stays on screen
            self.live = None
        failed = [r for r in run.results if r.status == FAILED]
        self.console.print(
            leaderboard_table(leaderboard, run.config.objective, hyperparameters=False)
        )
        if failed:
            self.console.print(
                f"{len(failed)} trial(s) failed; see {run.run_dir.trials}", markup=False
            )
        if leaderboard:
            self.console.print(
                f"winner saved to [bold]{escape(str(run.winner_path))}[/]"
                + escape(_winner_notes(run))
            )
        else:
            self.console.print("[red]no trial completed; no winner saved[/]")
        self.console.print(budget_text(run.elapsed, run.config.time_budget), markup=False)
        if run.interrupted:
            self.console.print(
                f"search interrupted; continue it with: automl search --resume {run.run_dir.path}",
                markup=False,
            )
        test_metrics = run.run_dir.winner.test_metrics
        if test_metrics.exists():
            self.console.print(test_set_table(read_json(test_metrics)))
        index = run.run_dir.report_index
        if index.exists():
            self.console.print(f"report: {index}", markup=False)

    def dashboard(self) -> Group:
        """The live view: budget and best so far over a table of trials."""
        run = self.run
        rows = list(self.rows.values())
        running = [r for r in rows if r.status == RUNNING]
        shown = (
            running
            + [r for r in rows if r.status != RUNNING][-SHOW_TRIALS:][
                : max(0, SHOW_TRIALS - len(running))
            ]
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("trial", "status", "architecture", "augmenter", "epochs"):
            table.add_column(column, no_wrap=True)
        for column in ("val_acc", "best", "device", "elapsed"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in sorted(shown, key=lambda r: r.spec.trial_id):
            spec = row.spec
            table.add_row(
                spec.trial_id,
                Text(row.status, style=STATUS_STYLE.get(row.status, "")),
                Text(spec.architecture),
                Text(spec.augmenter),
                _epoch_bar(row),
                _value(row.val_accuracy),
                _value(row.best),
                Text(spec.device),
                duration(row.elapsed),
            )
        budget = run.config.time_budget
        header = Table.grid(padding=(0, 2))
        header.add_row(
            Text(budget_text(run.elapsed, budget), style="bold"),
            ProgressBar(total=budget, completed=min(run.elapsed, budget), width=24)
            if budget
            else "",
            f"trials {len(run.results)}/{run.config.max_trials} ended",
        )
        header.add_row(
            Text(
                f"best so far {_best(run)}"
                + (
                    f" ({run.leaderboard[0].trial_id} {run.leaderboard[0].architecture})"
                    if run.leaderboard
                    else ""
                )
            ),
            "",
            Text(
                "devices busy: " + (", ".join(sorted({r.spec.device for r in running})) or "none")
            ),
        )
        return Group(header, table)


def stdout_console() -> Console:
    """A console on stdout; when that is not a terminal, text lines are not wrapped and
    tables take ``PLAIN_WIDTH`` columns."""
    console = Console()
    if not console.is_terminal:
        console.soft_wrap = True
        console.width = PLAIN_WIDTH
    return console


def test_set_table(metrics: dict) -> Table | str:
    """The winner's test accuracy and confusion matrix (rows: true class)."""
    if metrics.get("error"):
        return f"[red]test set not scored[/]: {escape(metrics['error'])}"
    table = Table(
        title=f"Test accuracy {metrics['accuracy']:.3f} on {metrics['images']} images "
        "(rows: true class, columns: predicted)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("")
    for name in metrics["classes"]:
        table.add_column(Text(name), justify="right")
    for name, row in zip(metrics["classes"], metrics["confusion_matrix"], strict=True):
        table.add_row(Text(name), *map(str, row))
    return table


def leaderboard_table(
    leaderboard: list[TrialResult], objective: str, hyperparameters: bool = True
) -> RenderableType:
    """The ranked trials, a line each, in ``PLAIN_WIDTH`` columns; then, with
    ``hyperparameters``, each one's values in a table of their own."""
    table = Table(
        title=f"Leaderboard (by {objective})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=0,  # the box puts a space between columns
    )
    scores = [objective] if objective != "val_accuracy" else []
    folds = any(r.folds for r in leaderboard)  # small data: candidates compared on folds
    headers = [HEADERS.get(name, name) for name in scores]
    numbers = [*headers, *(["fold mean"] if folds else []), "val_acc", "macro-F1", "TTA"]
    widths = {"#": len(str(len(leaderboard))), "trial": 5}
    widths |= {c: 11 if c == "fold mean" else max(5, len(c)) for c in numbers}
    widths |= {"epochs": 6, "time": 5, "params": 6}
    # what is left of PLAIN_WIDTH goes to the names, cut short with an ellipsis if need be
    room = PLAIN_WIDTH - sum(widths.values()) - len(widths) - 1
    names = {
        "architecture": max([12, *(len(r.architecture) for r in leaderboard)]),
        "augmenter": max([9, *(len(r.augmenter) for r in leaderboard)]),
    }
    if sum(names.values()) > room:
        names["augmenter"] = min(names["augmenter"], max(9, room // 3))
        names["architecture"] = room - names["augmenter"]
    table.add_column("#", no_wrap=True, min_width=widths["#"])
    table.add_column("trial", no_wrap=True, min_width=widths["trial"])
    for column, width in names.items():
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=width)
    for column in [*numbers, "epochs", "time", "params"]:
        table.add_column(column, justify="right", no_wrap=True, min_width=widths[column])
    for rank, r in enumerate(leaderboard, 1):
        table.add_row(
            str(rank),
            r.trial_id,
            Text(r.architecture),
            Text(r.augmenter),
            *[_value(r.score(name)) for name in scores],
            *([_fold_mean(r)] if folds else []),
            _value(r.val_accuracy),
            _value(r.macro_f1),
            _value(r.val_accuracy_tta),
            str(r.epochs_run),
            duration(r.train_seconds),
            _count(r.params),
        )
    if not hyperparameters or not leaderboard:
        return table
    values = Table(title="Hyperparameters", box=box.SIMPLE_HEAD, show_edge=False)
    values.add_column("trial", no_wrap=True)
    values.add_column("values")
    for r in leaderboard:
        values.add_row(r.trial_id, Text(format_hyperparameters(r)))
    return Group(table, "", values)


def _fold_mean(result: TrialResult) -> str:
    """The objective's mean over the folds its candidate was validated on, with the spread."""
    if not result.folds:
        return "-"
    return f"{result.folds['mean']:.3f}±{result.folds['spread']:.3f}"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def format_hyperparameters(result: TrialResult) -> str:
    """``filters=32 dense_units=64 ...``: the candidate's own values, scopes dropped."""
    return " ".join(
        f"{short_name(name)}={value:.3g}"
        if isinstance(value, float)
        else f"{short_name(name)}={value}"
        for name, value in result.hyperparameters.items()
        if name not in (ARCHITECTURE, AUGMENTER)
    )


def _best(run: SearchRun) -> str:
    if not run.leaderboard:
        return "-"
    return f"{run.leaderboard[0].score(run.config.objective):.3f}"


def _epoch_bar(row: _Row) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=row.spec.epochs, completed=row.epoch, width=14),
        f"{row.epoch}/{row.spec.epochs}",
    )
    return grid


def _winner_notes(run: SearchRun) -> str:
    """`` (refit on all N images, flip TTA kept)`` from ``winner.json``."""
    path = run.run_dir.winner.info
    if not path.exists():
        return ""
    winner = read_json(path)
    notes = []
    if winner.get("refit"):
        notes.append(f"refit on all {winner['refit']['images']} images")
    tta = winner.get("test_time_augmentation") or {}
    if tta.get("kept"):
        gain = f"{tta['val_accuracy_without']:.3f} -> {tta['val_accuracy_with']:.3f}"
        notes.append(f"flip TTA kept, val accuracy {gain}")
    return f" ({', '.join(notes)})" if notes else ""


def _plan_text(spec: TrialSpec) -> str:
    """What the trial is for and how long it may train, in a few words."""
    images = f" on {spec.train_images:,} images" if spec.train_images else ""
    if spec.seconds is not None:
        return f"{spec.stage}: {spec.seconds:.0f} s{images}"
    stage = f"{spec.stage}: " if spec.stage and spec.stage != "plain" else ""
    until = " or the deadline" if spec.deadline is not None else ""
    return f"{stage}up to {spec.epochs} epochs{until}{images}"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def budget_text(elapsed: float, budget: float | None) -> str:
    """``budget 2m13s used, 27m47s left of 30m00s``, or the elapsed time when unlimited."""
    if not budget:
        return f"{duration(elapsed)} elapsed, no time budget"
    if elapsed > budget:
        over = f"{duration(elapsed - budget)} over (the grace for finishing the winner)"
        return f"budget {duration(elapsed)} used of {duration(budget)}, {over}"
    left = budget - elapsed
    return f"budget {duration(elapsed)} used, {duration(left)} left of {duration(budget)}"


def duration(seconds: float) -> str:
    """``1h02m03s`` or ``2m03s``."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
