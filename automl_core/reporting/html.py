"""``RUN_DIR/report/index.html``: one static page, no server, no external assets.

The leaderboard, every trial, the plots (inlined as base64 PNG, so the page can be
mailed or attached as one file), the winner's model card and what the search ran with.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from automl_core.reporting.live import duration, format_hyperparameters
from automl_core.reporting.run_report import UNFINISHED
from automl_core.results.model_card import SCORES, percent
from automl_core.rundir import atomic_target, environment_facts
from automl_core.training.trial import COMPLETED, RUNNING, STOPPED

if TYPE_CHECKING:
    from automl_core.reporting.run_report import RunReport


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.winner td { background: #eef7ee; font-weight: 600; }
.failed { color: #b00; } .muted { color: #777; } .hp { font-size: 0.85em; color: #555; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.25em; }
"""


def write_html(report: RunReport, plots: dict[str, Path]) -> Path:
    """Write the run's ``report/index.html`` with ``plots`` ({title: png}) inlined; its path."""

    sections = [
        _summary(report),
        _leaderboard(report),
        _trials(report),
        "<h2>Plots</h2>" + "".join(_figure(title, path) for title, path in plots.items())
        if plots
        else "",
        _model_card(report.card, report.test),
        _environment(report.environment),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>automl report: {escape(report.run_dir.path.name)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>automl report: {escape(str(report.run_dir.path))}</h1>"
        + "".join(sections)
        + "</body></html>\n"
    )
    target = report.run_dir.report_index
    with atomic_target(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def _summary(report: RunReport) -> str:
    dataset = report.dataset
    budget = report.time_budget
    facts = {
        "status": report.status,
        "elapsed": duration(report.elapsed),
        "time budget": duration(budget) if budget else "none",
        "data": f"{dataset.get('source', '?')}: {len(dataset.get('classes', []))} classes, "
        f"{dataset.get('train', '?')} train / {dataset.get('val', '?')} val images",
        "unreadable files skipped": len(dataset.get("skipped", [])),
        "trials": f"{len(report.leaderboard)} completed of {len(report.trials)}",
        "objective": report.objective,
    }
    return (
        "<table id='summary'>"
        + "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items()
        )
        + "</table>"
    )


def _leaderboard(report: RunReport) -> str:
    if not report.leaderboard:
        return "<h2>Leaderboard</h2><p class='failed'>No trial completed; no winner.</p>"
    rows = []
    for rank, r in enumerate(report.leaderboard, 1):
        rows.append(
            f"<tr{' class=winner' if rank == 1 else ''}><td class=num>{rank}</td>"
            f"<td>{escape(r.trial_id)}</td><td>{escape(r.architecture)}</td>"
            f"<td>{escape(r.augmenter)}</td><td class=num>{r.val_accuracy:.3f}</td>"
            f"<td class=num>{number(r.balanced_accuracy)}</td>"
            f"<td class=num>{number(r.macro_f1)}</td>"
            f"<td class=num>{r.val_loss:.3f}</td><td class=num>{r.params or 0:,}</td>"
            f"<td class=num>{r.train_seconds:.1f}s</td><td class=num>{r.epochs_run}</td>"
            f"<td class=hp>{escape(format_hyperparameters(r))}</td></tr>"
        )
    head = _head(
        "#",
        "trial",
        "architecture",
        "augmenter",
        "val acc",
        "balanced acc",
        "macro-F1",
        "val loss",
        "params",
        "time",
        "epochs",
        "hyperparameters",
    )
    return (
        f"<h2>Leaderboard <span class=muted>(by {escape(report.objective)})</span></h2>"
        f"<table id='leaderboard'>{head}{''.join(rows)}</table>"
    )


def _trials(report: RunReport) -> str:
    others = [t for t in report.trials if t.status != COMPLETED]
    if not others:
        return ""
    rows = "".join(
        f"<tr><td>{escape(t.trial_id)}</td><td>{escape(t.architecture)} + "
        f"{escape(t.augmenter)}</td><td class=failed>{escape(t.status)}</td>"
        f"<td>{escape(t.error or _NOT_ENDED.get(t.status, ''))}</td></tr>"
        for t in others
    )
    return (
        "<h2>Trials that did not complete</h2><table id='other-trials'>"
        f"{_head('trial', 'candidate', 'status', 'why')}{rows}</table>"
    )


_NOT_ENDED = {
    STOPPED: "stopped by the user; runs again on --resume",
    UNFINISHED: "did not end (interrupted or killed); runs again on --resume",
    RUNNING: "still running",
}


def _figure(title: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img src='data:image/png;base64,{data}' alt='{escape(title)}'>"
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def _model_card(card: dict | None, test: dict | None) -> str:
    if card is None:
        return ""
    shape = card["input"]["shape"]
    model = card["model"]
    facts = {
        "architecture": f"{card['architecture']} + {card['augmenter']} (trial {card['trial_id']})",
        "input": f"RGB {shape[0]}x{shape[1]}, raw pixels 0..255 (preprocessing is inside)",
        "output": f"{len(card['classes'])} class probabilities: {', '.join(card['classes'])}",
        "file": f"winner/{model['file']}, {model['size_bytes'] / 1e6:.2f} MB, "
        f"{model['cpu_latency_ms']} ms per image on the CPU",
    }
    facts |= {
        name: f"{e['images']} images: "
        + ", ".join(f"{label} {percent(e.get(key))}" for key, label in SCORES.items())
        for name, e in card["evaluation"].items()
    }
    if test and test.get("error"):
        facts["test set"] = f"not scored: {test['error']}"
    table = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    hps = "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
        for k, v in card["hyperparameters"].items()
    )
    exports = "".join(
        f"<tr><td>{escape(r['path'])}</td><td>{escape(r['runtime'])}</td>"
        f"<td class=num>{r['top1_agreement']:.1%}</td><td class=num>{r['accuracy']:.1%}</td></tr>"
        for r in card.get("exports", {}).values()
    )
    return (
        "<h2>Model card</h2>"
        f"<table id='model-card'>{table}</table><h3>Hyperparameters</h3>"
        f"<table>{_head('name', 'value')}{hps}</table>"
        + _recalls(card["evaluation"])
        + (
            f"<h3>Exports</h3><table>{_head('artifact', 'runtime', 'top-1 agreement', 'accuracy')}"
            f"{exports}</table>"
            if exports
            else ""
        )
        + "<p>Use it: <code>automl predict RUN_DIR/winner photo.jpg</code>; "
        "the full card is <code>winner/model_card.md</code>.</p>"
    )


def _environment(environment: dict | None) -> str:
    """What the search ran with, and what each resume changed."""
    if environment is None:
        return ""
    rows = environment_facts(environment) | {"run schema": environment.get("schema", "?")}
    for number, resume in enumerate(environment.get("resumes", []), 1):
        rows[f"resume {number}"] = "; ".join(resume["changes"]) or "nothing changed"
    table = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<h2>Environment</h2><table id='environment'>{table}</table>"


def _recalls(evaluation: dict[str, dict]) -> str:
    """Each class's recall on the validation (and test) images."""
    classes = next(iter(evaluation.values()))["per_class_accuracy"]
    rows = "".join(
        f"<tr><td>{escape(cls)}</td>"
        + "".join(
            f"<td class=num>{percent(e['per_class_accuracy'].get(cls))}</td>"
            for e in evaluation.values()
        )
        + "</tr>"
        for cls in classes
    )
    names = [f"{name} recall" for name in evaluation]
    return f"<h3>Recall per class</h3><table id='recall'>{_head('class', *names)}{rows}</table>"


def number(value: float | None) -> str:
    """A score to three decimals; ``-`` for one a trial did not record."""
    return "-" if value is None else f"{value:.3f}"


def _head(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
