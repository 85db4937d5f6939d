"""The Python API: ``automl_core.search(...)`` and ``automl_core.load(run_dir)``.

The same search as ``automl search``, from a notebook or a script: it returns the ranked
trials, the run directory and the winner, and prints nothing unless asked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from automl_core.errors import UsageError
from automl_core.rundir import RunDir

if TYPE_CHECKING:
    from automl_core.results.predict import Predictor
    from automl_core.training.trial import TrialResult

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class SearchResult:
    """A finished (or interrupted) search: its leaderboard, winner and run directory."""

    run_dir: Path
    leaderboard: list[TrialResult]
    """Completed trials, best first."""
    trials: list[TrialResult]
    """Every trial that ended, in the order they ended (failed ones included)."""
    interrupted: bool = False

    @property
    def best(self) -> TrialResult | None:
        return self.leaderboard[0] if self.leaderboard else None

    @cached_property
    def winner(self) -> Predictor:
        """The winning model, loaded: ``.predict(pixels)``, ``.classes``, ``.input_size``."""
        return load(self.run_dir)

    @property
    def report(self) -> Path:
        """The static HTML report of the search."""
        return RunDir(self.run_dir).report_index

    def predict(self, images: Iterable[str | Path], top_k: int = 3) -> list[dict]:
        """Classify image files (or folders of them) with the winner; top-k per image."""
        from automl_core.results.predict import classify, image_files

        return classify(self.winner, image_files(images), top_k)


def search(
    data: str | Path,
    *,
    time_budget: float | str | None = None,
    architectures: str | Iterable[str] = "*",
    augmenters: str | Iterable[str] = "*",
    max_trials: int = 10,
    epochs: int = 20,
    out: str | Path | None = None,
    plugins: Iterable[str | Path] = (),
    verbose: bool = False,
    **settings,
) -> SearchResult:
    """Search ``data`` (an image folder, or another source the ``dataset`` loader reads).

    ``time_budget`` is seconds or a string like ``"90s"``, ``"30m"``, ``"1h30m"``;
    ``architectures``/``augmenters`` are names or shell patterns (a list, or one
    comma-separated string); ``plugins`` are ``.py`` files or module names, as ``-p``;
    ``verbose`` shows the live terminal view. Any other ``automl search`` setting
    (``tuner``, ``seed``, ``executor``, ``workers``, ``image_size``, ``export`` ...)
    is a keyword argument named like the ``SearchConfig`` field.
    """
    from automl_core.engine.search import SearchConfig
    from automl_core.engine.search import search as run_search
    from automl_core.plugin.manager import load_plugins

    fields = {f.name for f in dataclasses.fields(SearchConfig)} - {"source", "plugins"}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(
            f"unknown search setting(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(fields))}"
        )
    sources = [str(p) for p in plugins]
    config = SearchConfig(
        source=str(data),
        time_budget=parse_duration(time_budget),
        architectures=_names(architectures),
        augmenters=_names(augmenters),
        max_trials=max_trials,
        epochs=epochs,
        out=None if out is None else str(out),
        plugins=sources,
        **settings,
    )
    loaded = load_plugins(sources)
    if verbose:
        from automl_core.reporting.live import RichReporter

        loaded.manager.register(RichReporter(), name="rich-report")
    run = run_search(config, loaded)
    return SearchResult(run.run_dir.path, run.leaderboard, run.results, run.interrupted)


def load(path: str | Path) -> Predictor:
    """Load a trained winner: a run directory, its ``winner/`` folder, or any exported model."""
    from automl_core.results.predict import load_predictor

    return load_predictor(path)


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from ``3600``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``; ``None`` stays."""
    if value is None or isinstance(value, int | float):
        seconds = value
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise UsageError(f"time budget must look like 90s, 30m, 2h or 1h30m, got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds is not None and seconds <= 0:
        raise UsageError(f"time budget must be positive, got {value!r}")
    return None if seconds is None else float(seconds)


def _names(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise UsageError("give at least one name or pattern")
    return names
