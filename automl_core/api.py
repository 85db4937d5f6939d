"""The Python API: ``automl_core.search(...)`` and ``automl_core.load(run_dir)``.

The same search as ``automl search``, from a notebook or a script: it returns the ranked
trials, the run directory and the winner, and prints nothing unless asked.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_core.errors import UsageError
from automl_core.rundir import RunDir

if TYPE_CHECKING:
    from automl_core.results.predict import Predictor
    from automl_core.training.trial import TrialResult


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
    plugins: Iterable[object] = (),
    verbose: bool = False,
    **settings: Any,
) -> SearchResult:
    """Search ``data`` (an image folder, or another source the ``dataset`` loader reads).

    ``settings`` are those of ``automl search``, named like its options without the
    dashes (``time_budget="30m"``, ``max_trials=5``, ``architectures="resnet,vit*"``),
    with the same defaults and checks; docs/api.md lists them. ``plugins`` are ``.py``
    files or module names, as ``-p``, or plugin objects: modules, classes or instances
    with ``@hookimpl`` functions. A plugin that trial processes cannot import (defined in
    ``__main__`` or a notebook) makes the search train in this process
    (``executor="inline"``). ``verbose`` shows the live terminal view.
    """
    from automl_core.engine.search import search as run_search
    from automl_core.engine.settings import SearchConfig
    from automl_core.plugin.manager import load_plugins

    _check_names(settings)
    loaded = load_plugins(plugins)
    if loaded.in_memory:
        executor = settings.setdefault("executor", "inline")
        if executor != "inline":
            raise UsageError(
                f"plugin {loaded.in_memory[0]!r} exists only in this process, so the "
                f"{executor!r} executor's trial processes cannot load it: use "
                'executor="inline", or put the plugin in a module or .py file'
            )
    if verbose:
        from automl_core.reporting.live import RichReporter

        loaded.manager.register(RichReporter(), name="rich-report")
    config = SearchConfig(str(data), plugins=list(loaded.sources), **settings)
    run = run_search(config, loaded)
    return SearchResult(run.run_dir.path, run.leaderboard, run.results, run.interrupted)


def load(path: str | Path) -> Predictor:
    """Load a trained winner: a run directory, its ``winner/`` folder, or any exported model."""
    from automl_core.results.predict import load_predictor

    return load_predictor(path)


def _check_names(settings: dict[str, Any]) -> None:
    """An unknown keyword is a ``UsageError`` naming the closest setting."""
    from automl_core.engine.settings import SETTINGS

    valid = [*SETTINGS, "plugins", "verbose"]
    for name in settings:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else "see docs/api.md"
            raise UsageError(f"unknown search setting {name!r}; {hint}")
