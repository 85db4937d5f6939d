"""Export a run's winner, verify each artifact with its own runtime, keep the card current.

Verification runs the artifact on the search's validation images (rebuilt exactly as
the search split them) next to the Keras model: top-1 agreement and the largest
probability difference are recorded. A float export that differs by more than
``TOLERANCE`` is an error; a quantized one reports its accuracy change instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from automl_core.data.dataset import DatasetSplit, load_split
from automl_core.errors import UsageError
from automl_core.plugin.manager import Plugins, load_plugins
from automl_core.results import model_card
from automl_core.results.predict import (
    Predictor,
    is_saved_model,
    load_predictor,
    write_sidecars,
)
from automl_core.rundir import RunDir, WinnerDir, read_json
from automl_core.training.evaluate import classification_report

TOLERANCE = 1e-3
"""Largest probability difference a float export may show against the Keras model."""
REPRESENTATIVE_IMAGES = 100
"""Training images that calibrate an ``int8`` export."""


class ExportError(UsageError):
    """An export whose artifact does not give the Keras model's answers."""


@dataclass
class Winner:
    """A finished search's winner, its validation data and the Keras model's answers."""

    run_dir: RunDir
    metadata: dict
    data: DatasetSplit

    @property
    def dir(self) -> WinnerDir:
        return self.run_dir.winner

    @cached_property
    def reference(self) -> Predictor:
        return load_predictor(self.dir.model)

    @cached_property
    def reference_probabilities(self) -> np.ndarray:
        return self.reference.predict(self.data.x_val)


def load_winner(run_dir: str | Path, data: DatasetSplit | None = None) -> Winner:
    """The winner of the search in ``run_dir``, with the search's own validation split."""
    run_dir = RunDir(Path(run_dir))
    info = run_dir.winner.info
    if not (info.is_file() and run_dir.winner.model.is_file()):
        raise UsageError(
            f"{str(run_dir.path)!r} has no winner (winner/model.keras): "
            "give the run directory of a finished search"
        )
    return Winner(run_dir, read_json(info), data or load_split(run_dir.data))


def export_formats(
    winner: Winner,
    formats: list[str],
    quantize: str | None = None,
    output: str | Path | None = None,
    plugins: Plugins | None = None,
) -> dict[str, dict]:
    """Export and verify each format, then rewrite the model card; returns the records.

    ``quantize`` applies to the formats that support it and must be supported by one.
    ``output`` (``-o``) names the artifact when one format is asked for: that file, or
    that SavedModel folder. It is a folder to write into instead when it ends in a slash,
    when it is a folder the artifact would not replace (see ``_place``), and whenever
    several formats are asked for. The default folder is the winner's.
    """
    components = exporters_for(plugins or load_plugins(), formats, quantize)
    named = output is not None and len(components) == 1 and not str(output).endswith(("/", os.sep))
    target = Path(output).absolute() if output is not None else winner.dir.path
    records = {}
    for component in components:
        mode = quantize if quantize in component.tags else None
        key = f"{component.name}_{mode}" if mode else component.name
        records[key] = _export_one(winner, component, mode, target, named)
    write_card(winner, records)
    return records


def exporters_for(plugins: Plugins, formats: list[str], quantize: str | None) -> list:
    """The exporter components for ``formats``; a ``quantize`` mode none of them
    supports is an error, so a search can check its ``--export`` before it starts."""
    components = [plugins["exporters"].get(name).require() for name in formats]
    if quantize and not any(quantize in c.tags for c in components):
        able = [
            f"{c.name}: {', '.join(c.tags)}"
            for c in plugins["exporters"].components.values()
            if c.tags
        ]
        raise UsageError(
            f"--quantize {quantize!r} is not supported by {', '.join(formats)} "
            f"(modes by format: {'; '.join(able) or 'none'})"
        )
    return components


def write_card(winner: Winner, new_exports: dict[str, dict] | None = None) -> Path:
    """Write ``model_card.md`` and ``.json`` beside the model, keeping earlier exports."""
    previous = winner.dir.card_json
    exports = read_json(previous).get("exports", {}) if previous.is_file() else {}
    reference = winner.reference
    model = _artifact_facts(reference, winner.data.x_val[0])
    test = winner.dir.test_metrics
    precision, environment = winner.run_dir.precision, winner.run_dir.environment
    card = model_card.build(
        metadata=winner.metadata,
        test=read_json(test) if test.is_file() else None,
        precision=read_json(precision) if precision.is_file() else None,
        environment=read_json(environment) if environment.is_file() else None,
        dataset=read_json(winner.run_dir.dataset),
        validation=classification_report(
            winner.reference_probabilities, winner.data.y_val, winner.data.class_names
        ),
        model=model | {"file": winner.dir.model.name},
        exports=exports | (new_exports or {}),
    )
    return model_card.write(winner.dir, card)


def _export_one(winner: Winner, component, mode: str | None, target: Path, named: bool) -> dict:
    """Write one artifact into the folder ``target``, or at ``target`` when ``named``,
    with its sidecars (``write_sidecars``) inside a folder artifact or beside a file;
    then verify it."""
    from keras.models import load_model

    model = load_model(winner.dir.model, compile=False)
    metadata = winner.metadata | {"quantize": mode}
    if mode == "int8":
        metadata["representative_images"] = winner.data.x_train[:REPRESENTATIVE_IMAGES].astype(
            "float32"
        )
    folder = target.with_name(f".{target.name}.{os.getpid()}.export") if named else target
    folder.mkdir(parents=True, exist_ok=True)
    try:
        artifact = Path(component.obj(model, folder, metadata))
        if named:
            artifact = _place(artifact, target)
    finally:
        if named:
            shutil.rmtree(folder, ignore_errors=True)
    write_sidecars(
        artifact if artifact.is_dir() else artifact.parent,
        winner.metadata["classes"],
        winner.metadata["input_shape"][0],
    )
    record = verify(winner, artifact, quantized=mode is not None)
    record |= {"format": component.name, "quantize": mode}
    if not mode and record["max_abs_diff"] > TOLERANCE:
        _remove(artifact)
        raise ExportError(
            f"{component.name} export disagrees with the Keras model (largest probability "
            f"difference {record['max_abs_diff']:.2g} > {TOLERANCE}); removed {str(artifact)!r}"
        )
    return record


def _place(artifact: Path, target: Path) -> Path:
    """Move a freshly written ``artifact`` to ``target``, replacing what is there; into
    ``target`` under its own name when ``target`` is a folder it would not replace (any
    folder, for a file; for a folder artifact, a folder that is neither empty nor a
    SavedModel), so that a folder of the user's is never deleted."""
    if target.is_dir() and not (
        artifact.is_dir() and (is_saved_model(target) or not any(target.iterdir()))
    ):
        target = target / artifact.name
    _remove(target)
    artifact.rename(target)
    return target


def verify(winner: Winner, artifact: Path, quantized: bool) -> dict:
    """Run ``artifact`` with its own runtime on the validation images, next to Keras."""
    predictor = load_predictor(artifact)
    reference = winner.reference_probabilities
    probabilities = predictor.predict(winner.data.x_val)
    agree = np.argmax(probabilities, axis=1) == np.argmax(reference, axis=1)
    labels = winner.data.y_val
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    record = _artifact_facts(predictor, winner.data.x_val[0]) | {
        "path": _shown(artifact, winner.dir.path),
        "images": len(labels),
        "top1_agreement": float(np.mean(agree)),
        "max_abs_diff": float(np.max(np.abs(probabilities - reference))),
        "accuracy": accuracy,
    }
    if quantized:
        keras_accuracy = float(np.mean(np.argmax(reference, axis=1) == labels))
        record["accuracy_change"] = accuracy - keras_accuracy
    return record


def _artifact_facts(predictor: Predictor, image: np.ndarray) -> dict:
    path = predictor.path
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return {
        "runtime": predictor.runtime,
        "any_size": predictor.any_size,
        "size_bytes": sum(p.stat().st_size for p in files),
        "cpu_latency_ms": predictor.latency_ms(image),
    }


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to the winner folder when it is inside it."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path.resolve())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish_search(run) -> None:
    """After a search: the model card, and the exports ``--export`` asked for."""
    winner = load_winner(run.run_dir.path, run.data)
    if run.config.export:
        export_formats(winner, run.config.export, run.config.quantize, plugins=run.plugins)
    else:
        write_card(winner)
