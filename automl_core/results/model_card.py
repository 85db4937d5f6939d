"""The model card: what a user needs to run the winner and judge it, as JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

from automl_core.rundir import WinnerDir, atomic_target, write_json

SCORES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
"""A classification report's scores and how a card names them (a card of a run from
before class-balanced scores shows n/a for those)."""
RESIZE = "squash to the input size, bilinear (automl_core.data.decode.decode_image)"


def build(
    metadata: dict,
    dataset: dict,
    validation: dict,
    model: dict,
    exports: dict[str, dict],
    test: dict | None = None,
    precision: dict | None = None,
    environment: dict | None = None,
) -> dict:
    """The card's facts, JSON-ready.

    ``metadata`` is ``winner.json``, ``dataset`` is ``dataset.json``, ``validation`` and
    ``test`` (``winner/test_metrics.json``, when the search had a test set) are
    classification reports,
    ``model`` the ``.keras`` file's size and latency, ``exports`` one verification record
    per exported artifact, ``precision`` the run's ``precision.json``, ``environment``
    its ``environment.json`` (what it ran with).
    """
    height, width, channels = metadata["input_shape"]
    evaluation = {"validation": validation}
    if test:
        evaluation["test"] = test
    return {
        "classes": metadata["classes"],
        "input": {
            "shape": [height, width, channels],
            "dtype": "float32",
            "value_range": [0, 255],
            "color": "RGB",
            "layout": "batch, height, width, channels",
            "resize": f"inside the model, from any size: {RESIZE}"
            if model.get("any_size")
            else RESIZE,
            "preprocessing": "inside the model: pass raw pixel values",
        },
        "architecture": metadata["architecture"],
        "augmenter": metadata["augmenter"],
        "trial_id": metadata["trial_id"],
        "hyperparameters": metadata["hyperparameters"],
        "evaluation": evaluation,
        "training_data": {
            key: dataset[key]
            for key in (
                "source",
                "layout",
                "images",
                "counts",
                "train",
                "val",
                "val_split",
                "seed",
                "class_weights",
            )
            if key in dataset
        }
        | {"skipped_files": len(dataset.get("skipped", []))},
        "model": model,
        "exports": exports,
        "training_precision": None
        if precision is None
        else {
            "policy": precision["architectures"].get(metadata["architecture"], "float32"),
            "reason": precision["summary"],
        },
        "reproducibility": None if environment is None else _reproducibility(environment),
    }


def _reproducibility(environment: dict) -> dict:
    """What the search ran with: its start, and what any resume changed."""
    facts = {key: value for key, value in environment.items() if key != "resumes"}
    changes = [change for resume in environment.get("resumes", []) for change in resume["changes"]]
    return facts | {"changed_on_resume": changes}


def write(winner: WinnerDir, card: dict) -> Path:
    """Write ``model_card.json`` and ``model_card.md`` into ``winner/``; returns the .md."""
    write_json(winner.card_json, card)
    with atomic_target(winner.card_md) as tmp:
        tmp.write_text(markdown(card))
    return winner.card_md


def markdown(card: dict) -> str:
    """The card as Markdown, for people."""
    lines = [
        f"# Model card: {card['architecture']}",
        "",
        "## Use",
        "",
        *_input_lines(card),
        f"- Output: {len(card['classes'])} class probabilities (softmax), in this order:",
        "",
        *[f"  {i}. {name}" for i, name in enumerate(card["classes"])],
        "",
        "```",
        "automl predict model.keras photo.jpg --top-k 3",
        "```",
        "",
        "## Model",
        "",
        f"- Architecture: {card['architecture']} (augmenter: {card['augmenter']}, "
        f"trial {card['trial_id']})",
        f"- File: {card['model']['file']}, {_size(card['model']['size_bytes'])}, "
        f"{card['model']['cpu_latency_ms']} ms per image on this machine's CPU",
        *_precision_line(card),
        "- Hyperparameters:",
        *[f"  - {name}: {value}" for name, value in card["hyperparameters"].items()],
        "",
        "## Evaluation",
        "",
    ]
    for name, report in card["evaluation"].items():
        lines += _report(name, report)
    lines += ["## Training data", "", *_training_data(card["training_data"])]
    lines += ["", "## Exports", ""]
    if card["exports"]:
        lines += [
            "| artifact | runtime | size | ms/image | top-1 agreement | max prob diff | "
            "accuracy | change |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for record in card["exports"].values():
            change = record.get("accuracy_change")
            lines.append(
                f"| {record['path']} | {record['runtime']} | {_size(record['size_bytes'])} "
                f"| {record['cpu_latency_ms']} | {record['top1_agreement']:.1%} "
                f"| {record['max_abs_diff']:.2g} | {record['accuracy']:.1%} "
                f"| {'' if change is None else f'{change:+.1%}'} |"
            )
    else:
        lines.append("None yet: `automl export RUN_DIR --format onnx` adds one.")
    lines += _reproducibility_lines(card)
    return "\n".join(lines) + "\n"


def _input_lines(card: dict) -> list[str]:
    """What the model takes: any size (but the fixed-size exports), or exactly its size."""
    shape = card["input"]["shape"]
    size = f"{shape[0]}x{shape[1]}"
    if not card["model"].get("any_size"):
        return [
            f"- Input: RGB images, {size} pixels, float32 raw values 0..255, batch first; "
            "resizing is yours, all other preprocessing is inside the model."
        ]
    lines = [
        "- Input: RGB images of any size, float32 raw values 0..255, batch first; the model "
        f"squashes them to {size} as training did, and all other preprocessing is inside it."
    ]
    fixed = [r["path"] for r in card["exports"].values() if not r.get("any_size")]
    if fixed:
        lines.append(
            f"- {', '.join(fixed)}: exactly {size}; squash images to that size first "
            "(bilinear, as `automl predict` does)."
        )
    return lines


def _report(name: str, report: dict) -> list[str]:
    """A classification report's scores, then its recall per class."""
    lines = [
        f"### {name.capitalize()} ({report['images']} images): "
        + ", ".join(f"{label} {percent(report.get(key))}" for key, label in SCORES.items()),
        "",
        "| class | recall |",
        "|---|---|",
    ]
    for cls, value in report["per_class_accuracy"].items():
        lines.append(f"| {cls} | {percent(value)} |")
    return [*lines, ""]


def _fact(value) -> str:
    """A training-data fact: a mapping (the class weights) as ``name value``."""
    if isinstance(value, dict):
        return ", ".join(f"{name} {count:g}" for name, count in value.items())
    return "none" if value is None else str(value)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _training_data(data: dict) -> list[str]:
    """The facts as a list, then the images per class as a table."""
    lines = [f"- {key}: {_fact(value)}" for key, value in data.items() if key != "counts"]
    if data.get("counts"):
        lines += ["", "| class | images |", "|---|---|"]
        lines += [f"| {name} | {count:,} |" for name, count in data["counts"].items()]
    return lines


def _precision_line(card: dict) -> list[str]:
    """``- Trained in bfloat16 (search: ...); saved in float32``, when the run recorded it."""
    if not card.get("training_precision"):
        return []
    trained = card["training_precision"]
    compute = trained["policy"].removeprefix("mixed_")
    return [f"- Trained in {compute} (search's precision: {trained['reason']}); saved in float32"]


def _reproducibility_lines(card: dict) -> list[str]:
    """The Reproducibility section, when the run recorded what it ran with."""
    facts = card.get("reproducibility")
    if not facts:
        return []
    cpu, versions = facts["cpu"], dict(facts["versions"])
    python = versions.pop("python")
    lines = [
        "",
        "## Reproducibility",
        "",
        f"- Run schema {facts['schema']}; Python {python}; "
        + ", ".join(f"{name} {version}" for name, version in versions.items()),
        f"- Platform: {facts['platform']}",
        f"- CPU: {cpu['model']}, {cpu['cores']} cores (AMX: {_yes(cpu['amx'])}, "
        f"AVX512-BF16: {_yes(cpu['avx512_bf16'])})",
        f"- GPUs: {', '.join(facts['gpus']) or 'none'}",
        f"- Precision: {facts['precision']}",
    ]
    if facts["changed_on_resume"]:
        lines.append(f"- Changed on resume: {'; '.join(facts['changed_on_resume'])}")
    return lines


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
