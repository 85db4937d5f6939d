"""Winner export formats. ``keras`` is always written: ``winner/model.keras``."""

from __future__ import annotations

from pathlib import Path

from automl_core import hookimpl
from automl_core.rundir import atomic_target


@hookimpl
def register_exporters(register):
    register("keras", export_keras, description="native Keras .keras file")


def export_keras(model, path: Path, metadata: dict) -> Path:
    target = Path(path) / "model.keras"
    with atomic_target(target) as tmp:
        model.save(tmp)
    return target
