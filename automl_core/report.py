"""The terminal report: a live view while searching, the leaderboard at the end.

The reporter is a plugin like any other: it implements the observer hooks. On a
terminal it shows a live epoch bar; elsewhere (CI, pipes) it prints one line per trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from automl_core import hookimpl
from automl_core.rundir import read_json
from automl_core.space import ARCHITECTURE, AUGMENTER, short_name

SHOW_SKIPPED = 10
"""Skipped files listed by name at the start; all of them are in ``dataset.json``."""

if TYPE_CHECKING:
    from automl_core.engine import SearchRun
    from automl_core.trial import TrialResult, TrialSpec


class RichReporter:
    """Shows a search as it happens; register an instance with the plugin manager."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    @hookimpl
    def search_start(self, run: SearchRun) -> None:
        summary = run.dataset_summary
        skipped = len(summary["skipped"])
        self.console.print(
            f"[bold]automl search[/] {summary['source']}: {len(summary['classes'])} classes, "
            f"{summary['train']} train / {summary['val']} val images at "
            f"{summary['image_shape'][0]}x{summary['image_shape'][1]}"
            + (f", {skipped} unreadable file(s) skipped" if skipped else "")
        )
        for item in summary["skipped"][:SHOW_SKIPPED]:
            self.console.print(f"  skipped {item['path']}: {item['reason']}", markup=False)
        if skipped > SHOW_SKIPPED:
            self.console.print(f"  ... and {skipped - SHOW_SKIPPED} more in dataset.json")
        self.console.print(
            f"candidates: {', '.join(run.architectures)}; augmenters: "
            f"{', '.join(run.augmenters)}; up to {run.config.max_trials} trials of "
            f"{run.config.epochs} epochs; run directory {run.run_dir.path}"
        )
        if run.results:
            self.console.print(f"resuming: {len(run.results)} trial(s) already done")
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()

    @hookimpl
    def trial_start(self, run: SearchRun, spec: TrialSpec) -> None:
        if self.progress is not None:
            self.tasks[spec.trial_id] = self.progress.add_task(
                f"trial {spec.trial_id} {spec.architecture} + {spec.augmenter}",
                total=spec.epochs,
                status=f"best so far {_best(run)}",
            )

    @hookimpl
    def trial_epoch_end(self, run: SearchRun, spec: TrialSpec, epoch: int, logs: dict) -> None:
        if self.progress is not None and spec.trial_id in self.tasks:
            self.progress.update(
                self.tasks[spec.trial_id],
                completed=epoch,
                status=f"val_acc {logs.get('val_accuracy', float('nan')):.3f} "
                f"(best so far {_best(run)}) on {spec.device}",
            )

    @hookimpl
    def trial_end(self, run: SearchRun, result: TrialResult) -> None:
        if self.progress is not None and result.trial_id in self.tasks:
            self.progress.remove_task(self.tasks.pop(result.trial_id))
        if result.status == "completed":
            outcome = (
                f"val_acc {result.val_accuracy:.3f} val_loss {result.val_loss:.3f} "
                f"in {result.epochs_run} epochs, {result.train_seconds:.1f}s"
            )
        elif result.status == "stopped":
            outcome = "[yellow]stopped[/]: runs again on --resume"
        else:
            outcome = f"[red]failed[/]: {result.error}"
        self.console.print(
            f"trial {result.trial_id} {result.architecture} + {result.augmenter}: {outcome}"
        )

    @hookimpl
    def search_end(self, run: SearchRun, leaderboard: list[TrialResult]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        failed = [r for r in run.results if r.status == "failed"]
        self.console.print(leaderboard_table(leaderboard, run.config.objective))
        if failed:
            self.console.print(f"{len(failed)} trial(s) failed; see {run.run_dir.path}/trials")
        if leaderboard:
            self.console.print(f"winner saved to [bold]{run.winner_path}[/]")
        else:
            self.console.print("[red]no trial completed; no winner saved[/]")
        if run.interrupted:
            self.console.print(
                f"search interrupted; continue it with: automl search --resume {run.run_dir.path}"
            )

        test_metrics = run.run_dir.winner / "test_metrics.json"
        if test_metrics.exists():
            self.console.print(test_set_table(read_json(test_metrics)))


def test_set_table(metrics: dict) -> Table | str:
    """The winner's test accuracy and confusion matrix (rows: true class)."""
    if metrics.get("error"):
        return f"[red]test set not scored[/]: {metrics['error']}"
    table = Table(
        title=f"Test accuracy {metrics['accuracy']:.3f} on {metrics['images']} images "
        "(rows: true class, columns: predicted)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("")
    for name in metrics["classes"]:
        table.add_column(name, justify="right")
    for name, row in zip(metrics["classes"], metrics["confusion_matrix"], strict=True):
        table.add_row(name, *map(str, row))
    return table


def leaderboard_table(leaderboard: list[TrialResult], objective: str) -> Table:
    """The ranked trials as a rich table that fits 80 columns; hyperparameters wrap."""
    table = Table(title=f"Leaderboard (by {objective})", box=box.SIMPLE_HEAD)
    table.add_column("#", no_wrap=True)
    table.add_column("trial", no_wrap=True)
    table.add_column("candidate", no_wrap=True)
    for column in ("val_acc", "params", "time"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("hyperparameters", ratio=1)
    for rank, r in enumerate(leaderboard, 1):
        table.add_row(
            str(rank),
            r.trial_id,
            f"{r.architecture}\n[dim]+ {r.augmenter}[/]",
            f"{r.val_accuracy:.3f}",
            _count(r.params),
            f"{r.train_seconds:.0f}s",
            format_hyperparameters(r),
        )
    return table


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
