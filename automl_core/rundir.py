"""The run directory: the whole search state as files, every write atomic."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix) to write; rename on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves the old file or the new one, never half."""
    with atomic_target(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class RunDir:
    """Paths of one search's run directory (see DESIGN.md)."""

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

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.json"

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
    def winner(self) -> Path:
        return self.path / "winner"

    def trial(self, trial_id: str) -> Path:
        return self.path / "trials" / trial_id
