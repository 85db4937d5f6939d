"""The run directory: the whole search state as files, every write atomic.

Every path in it is named here, and only here::

    runs/<name>/
      config.json        the resolved settings
      environment.json   the run's schema version; versions, CPU, GPUs and precision
                         it ran with, at the start and at each resume
      dataset.json       classes, counts, skipped files, cache location
      precision.json     the precision trials train in, and the probe that chose it
      state.json         running / finished / interrupted, elapsed seconds
      data/              the train/validation split (memory-mapped by trial processes)
      oracle/            the tuner's state (keras-tuner: trial.json per trial)
      trials/<id>/       spec.json, metrics.json, history.json, model.keras, log.txt,
                         traceback.txt (if it failed), STOP (a stop request)
      leaderboard.json   completed trials, best first
      winner/            model.keras, labels.json, input.json, winner.json,
                         model_card.{json,md}, test_metrics.json (with a test set), exports
      report/            index.html and the plots
      tensorboard/<id>/  TensorBoard event files per trial (--track tensorboard)
      mlflow.json        the MLflow run that logs the search (--track mlflow)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from automl_core.errors import UsageError

UMASK = os.umask(0o077)
os.umask(UMASK)
"""The process's umask: a finished file gets the mode a plain ``open`` would give it."""


@contextmanager
def atomic_target(path: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix, created exclusively under an
    unpredictable name) to write; rename on success. ``private``: owner-only (0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o600 if private else 0o666 & ~UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves the old file or the new one, never half."""
    with atomic_target(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


RUN_SCHEMA = 1
"""The run directory's layout version, recorded in ``environment.json``: a run written
under another one is reported as far as it can be read, and never resumed."""


def environment_facts(record: dict) -> dict[str, str]:
    """An ``environment.json`` record's facts by name: what a resume is compared on and
    a report shows."""
    return record["versions"] | {
        "platform": record["platform"],
        "CPU": record["cpu"]["model"],
        "GPUs": ", ".join(record["gpus"]) or "none",
        "precision": record["precision"],
    }


LABELS = "labels.json"
"""Class names in output order, beside the winner and every model exported from it."""
INPUT = "input.json"
"""``{"image_size": side}``, beside ``LABELS``: the square size the training images were
decoded at. A model that takes any size squashes images to it; ``automl predict`` decodes
at it."""


class ModelFolder:
    """A folder that holds a ``model.keras``; usable wherever a path is."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def model(self) -> Path:
        return self.path / "model.keras"


class TrialDir(ModelFolder):
    """Paths of one trial's folder, ``trials/<id>/``: all a trial process knows."""

    @property
    def spec(self) -> Path:
        """The ``TrialSpec`` the trial runs."""
        return self.path / "spec.json"

    @property
    def metrics(self) -> Path:
        """The ``TrialResult``; there once the trial has ended."""
        return self.path / "metrics.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def log(self) -> Path:
        """The trial process's stderr."""
        return self.path / "log.txt"

    @property
    def traceback(self) -> Path:
        return self.path / "traceback.txt"

    @property
    def stop(self) -> Path:
        """Its existence asks the trial to stop after its current epoch."""
        return self.path / "STOP"


class WinnerDir(ModelFolder):
    """Paths of ``winner/``: the winner's model, its facts and its model card."""

    @property
    def labels(self) -> Path:
        return self.path / LABELS

    @property
    def info(self) -> Path:
        """``winner.json``: the trial it comes from, classes, input shape, refit, TTA."""
        return self.path / "winner.json"

    @property
    def test_metrics(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def card_json(self) -> Path:
        return self.path / "model_card.json"

    @property
    def card_md(self) -> Path:
        return self.path / "model_card.md"


class RunDir:
    """Paths of one search's run directory (the layout is in this module's docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def new(cls, parent: Path = Path("runs")) -> RunDir:
        """A fresh ``runs/<timestamp>`` directory, with ``runs/latest`` pointing at it."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = parent / stamp, 1
        while path.exists():
            n += 1
            path = parent / f"{stamp}-{n}"
        path.mkdir(parents=True)
        latest = parent / "latest"
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(path.name)
        return cls(path)

    def check_new(self, source: str | Path) -> None:
        """Refuse a folder a new search must not write into (``--out``): a search's run
        directory, a file, a folder holding anything but a run's own files, or a folder
        inside the dataset folder ``source``. A new or empty folder is fine."""
        path = self.path
        if self.config.exists():
            raise UsageError(
                f"{str(path)!r} already holds a search; continue it with --resume {path} "
                "or choose another --out"
            )
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {str(path)!r} is a file: give a new or empty folder")
        dataset = Path(source).resolve()
        if dataset.is_dir() and path.resolve().is_relative_to(dataset):
            raise UsageError(
                f"--out {str(path)!r} is inside the dataset folder {str(source)!r}, where a "
                "later search would read it as images: choose a folder outside it"
            )
        own = {self.dataset, self.environment, self.precision, self.state, self.leaderboard}
        own |= {self.data, self.oracle, self.trials, self.winner.path, self.report}
        names = os.listdir(path) if path.is_dir() else []
        others = sorted(name for name in names if path / name not in own)
        if others:
            raise UsageError(
                f"--out {str(path)!r} holds other files ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}) that a search would overwrite: "
                "give a new or empty folder"
            )

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    def read_config(self) -> dict:
        """The saved settings; a missing or unreadable ``config.json`` is a usage error."""
        if not self.config.is_file():
            raise UsageError(f"{str(self.path)!r} is not a search run directory (no config.json)")
        try:
            settings = read_json(self.config)
            if not isinstance(settings, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise UsageError(
                f"{str(self.config)!r} is unreadable ({error}): restore it, or start a new search"
            ) from error
        return settings

    @property
    def environment(self) -> Path:
        """The schema version, and what the search ran with (``engine/environment.py``)."""
        return self.path / "environment.json"

    def schema_mismatch(self) -> str | None:
        """One line saying the run was written under another ``RUN_SCHEMA``, or records
        none; ``None`` when it is this one."""
        try:
            schema = read_json(self.environment)["schema"]
        except (OSError, ValueError, TypeError, KeyError):
            return (
                f"{str(self.path)!r} records no run schema (no readable environment.json: "
                f"written before automl recorded one); this automl reads schema {RUN_SCHEMA}"
            )
        if schema == RUN_SCHEMA:
            return None
        return (
            f"{str(self.path)!r} was written by schema {schema}; "
            f"this automl reads schema {RUN_SCHEMA}"
        )

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.json"

    @property
    def precision(self) -> Path:
        """The precision trials train in, and the probe that chose it."""
        return self.path / "precision.json"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def leaderboard(self) -> Path:
        return self.path / "leaderboard.json"

    @property
    def oracle(self) -> Path:
        return self.path / "oracle"

    @property
    def trials(self) -> Path:
        return self.path / "trials"

    def trial(self, trial_id: str) -> TrialDir:
        return TrialDir(self.trials / trial_id)

    def trial_dirs(self) -> list[TrialDir]:
        """Every trial's folder, in trial-id order."""
        return [TrialDir(path) for path in sorted(self.trials.glob("*"))]

    @property
    def winner(self) -> WinnerDir:
        return WinnerDir(self.path / "winner")

    @property
    def report(self) -> Path:
        """The HTML report's folder: ``index.html`` and its plots."""
        return self.path / "report"

    @property
    def report_index(self) -> Path:
        return self.report / "index.html"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's log directory: one folder of event files per trial."""
        return self.path / "tensorboard"

    @property
    def mlflow(self) -> Path:
        """The MLflow store and parent run of the search, so a resume logs into it again."""
        return self.path / "mlflow.json"
