"""The report's plots as PNG files: learning curves, accuracy against time, the winner.

matplotlib is imported when a plot is drawn (a bare Figure renders with Agg, no display
needed), so the CLI starts without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from automl_core.rundir import atomic_target

if TYPE_CHECKING:
    from automl_core.reporting.run_report import RunReport
    from automl_core.training.trial import TrialResult

LEARNING_CURVES = "learning_curves.png"
ACCURACY_VS_TIME = "accuracy_vs_time.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
LEGEND_TRIALS = 12
"""Trials named in a legend; more would hide the plot."""
PARENT = "tuner/trial_id"
"""The hyperparameter (keras-tuner's) naming the trial a continued trial trains further."""


def write_plots(report: RunReport, folder: Path) -> dict[str, Path]:
    """Draw every plot the run has data for into ``folder``; ``{title: path}``."""
    drawn = {}
    plots = (
        ("Learning curves", LEARNING_CURVES, _learning_curves),
        ("Validation accuracy against training time", ACCURACY_VS_TIME, _accuracy_vs_time),
        ("Winner: confusion matrix", CONFUSION_MATRIX, _confusion_matrices),
        ("Winner: accuracy per class", PER_CLASS_ACCURACY, _per_class_accuracy),
    )
    for title, name, draw in plots:
        figure = draw(report)
        if figure is not None:
            drawn[title] = _save(figure, Path(folder) / name)
    return drawn


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (time, accuracy) points no other point beats on both, fastest first.

    A point is on the front when every faster point has lower accuracy.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _learning_curves(report: RunReport):
    trials = [t for t in report.trials if t.history.get("val_accuracy")]
    if not trials:
        return None
    by_id = {t.trial_id: t for t in report.trials}
    figure, (accuracy, loss) = _figure(ncols=2, size=(11, 4.2))
    for trial in trials:
        label = f"{trial.trial_id} {trial.architecture}"
        (line,) = accuracy.plot(*curve(trial, "val_accuracy", by_id), marker=".", label=label)
        if trial.history.get("val_loss"):
            loss.plot(*curve(trial, "val_loss", by_id), marker=".", color=line.get_color())
    accuracy.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    loss.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    for axes in (accuracy, loss):
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
    if len(trials) <= LEGEND_TRIALS:
        accuracy.legend(fontsize="small")
    return figure


def curve(
    trial: TrialResult, metric: str, trials: dict[str, TrialResult]
) -> tuple[list[int], list[float]]:
    """``trial``'s ``metric`` by epoch, counted on from the epochs it continued (its
    ``initial_epoch``); a continued trial's line starts at its parent's point (``trials``:
    by id) at that epoch."""
    values = list(trial.history.get(metric, []))
    start = trial.initial_epoch
    epochs = list(range(start + 1, start + len(values) + 1))
    parent = trials.get(str(trial.hp_config.get("values", {}).get(PARENT)))
    if start and parent is not None:
        index = start - parent.initial_epoch - 1
        history = parent.history.get(metric, [])
        if 0 <= index < len(history):
            epochs, values = [start, *epochs], [history[index], *values]
    return epochs, values


def _accuracy_vs_time(report: RunReport):
    trials = report.leaderboard
    if not trials:
        return None
    points = [(t.train_seconds, t.val_accuracy) for t in trials]
    front = pareto_front(points)
    figure, (axes,) = _figure()
    axes.scatter(*zip(*points, strict=True), color="tab:blue", label="trial")
    axes.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        color="tab:red",
        marker="o",
        drawstyle="steps-post",
        label="Pareto front",
    )
    for trial, (seconds, value) in zip(trials, points, strict=True):
        axes.annotate(
            trial.trial_id,
            (seconds, value),
            fontsize="x-small",
            xytext=(4, 4),
            textcoords="offset points",
        )
    axes.set(
        xlabel="training time (s)",
        ylabel="validation accuracy",
        title="Validation accuracy against training time",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def _confusion_matrices(report: RunReport):
    reports = _winner_evaluations(report)
    if not reports:
        return None
    figure, panels = _figure(ncols=len(reports), size=(5.5 * len(reports), 5))
    for axes, (name, evaluation) in zip(panels, reports.items(), strict=True):
        matrix, classes = evaluation["confusion_matrix"], evaluation["classes"]
        axes.imshow(matrix, cmap="Blues")
        ticks = range(len(classes))
        literal = {"fontsize": "small", "parse_math": False}  # a `$` in a name is no formula
        axes.set_xticks(ticks, classes, rotation=45, ha="right", **literal)
        axes.set_yticks(ticks, classes, **literal)
        axes.set(xlabel="predicted", ylabel="true", title=f"{name} ({evaluation['images']} images)")
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                colour = "white" if count > peak / 2 else "black"
                axes.text(j, i, count, ha="center", va="center", color=colour, fontsize="small")
    return figure


def _per_class_accuracy(report: RunReport):
    reports = _winner_evaluations(report)
    if not reports:
        return None
    classes = next(iter(reports.values()))["classes"]
    figure, (axes,) = _figure(size=(7, 1.2 + 0.35 * len(classes) * len(reports)))
    height = 0.8 / len(reports)
    for k, (name, evaluation) in enumerate(reports.items()):
        values = [evaluation["per_class_accuracy"].get(c) or 0.0 for c in classes]
        positions = [i + k * height for i in range(len(classes))]
        axes.barh(positions, values, height=height, label=name)
    axes.set_yticks([i + 0.4 - height / 2 for i in range(len(classes))], classes, parse_math=False)
    axes.invert_yaxis()
    axes.set(xlim=(0, 1), xlabel="accuracy", title="Winner: accuracy per class")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def _winner_evaluations(report: RunReport) -> dict[str, dict]:
    """The winner's classification reports by split: validation, and test if scored."""
    evaluations = dict((report.card or {}).get("evaluation", {}))
    if report.test and not report.test.get("error"):
        evaluations["test"] = report.test
    return {name.capitalize(): e for name, e in evaluations.items() if e.get("images")}


def _figure(ncols: int = 1, size: tuple[float, float] = (6.5, 4.2)):
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    figure = Figure(figsize=size, layout="constrained")
    return figure, list(figure.subplots(1, ncols, squeeze=False)[0])


def _save(figure, path: Path) -> Path:
    with atomic_target(path) as tmp:
        figure.savefig(tmp, dpi=100)
    return path
