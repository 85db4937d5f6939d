"""Shared fixtures: tiny real image folders, an isolated cache, the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
FAILURES = str(Path(__file__).parent / "plugins" / "trial_failures.py")
"""Test architectures: ``small``, ones that fail in each way, ``sleepy``, ``unaffordable``."""
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def make_image_folder(
    root: Path,
    classes=("red", "green", "blue"),
    per_class: int = 12,
    size: int = 16,
    seed: int = 0,
) -> Path:
    """Write ``per_class`` noisy images per class, tinted by class so they are learnable;
    another ``seed`` gives new images of the same kind (a held-out set)."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        tint = np.array(COLOURS.get(name, (128, 128, 128)))
        for i in range(per_class):
            noise = rng.integers(-40, 40, size=(size, size, 3))
            pixels = np.clip(tint + noise, 0, 255).astype(np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i:03d}{suffix}")
    return root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's, and downloads no weights
    (an empty Keras cache). The precision probe's measurements (one per machine and
    thread count) are shared by the session's tests, so that not every search measures
    again."""
    cache = tmp_path / "automl-cache"
    shared = tmp_path_factory.getbasetemp().parent / "precision.json"  # all xdist workers
    if shared.exists():
        cache.mkdir()
        shutil.copy(shared, cache / "precision.json")
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(cache))
    # nothing reaches the internet, and Keras's cache of pretrained weights stays untouched
    monkeypatch.setenv("AUTOML_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    yield cache
    if (cache / "precision.json").exists():
        shutil.copy(cache / "precision.json", tmp_path / "precision.json")
        os.replace(tmp_path / "precision.json", shared)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


def run_automl(*args: str, cwd: Path | None = None, env: dict | None = None, **options):
    """Run the real ``automl`` CLI in a subprocess and return the completed process;
    ``options`` go to ``subprocess.run`` (``preexec_fn``, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "automl_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=900,
        **options,
    )


def train_tiny_run(root: Path, **config) -> Path:
    """A finished one-trial, one-epoch search on a fresh image folder; its run directory.

    For module-scoped fixtures: the cache lives under ``root``, not the per-test one.
    """
    from automl_core.engine.search import search
    from automl_core.engine.settings import SearchConfig

    images = make_image_folder(root / "images")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        settings = {"architectures": ["baseline_cnn"], "augmenters": ["none"]} | config
        search(SearchConfig(str(images), max_trials=1, epochs=1, out=str(root / "run"), **settings))
    return root / "run"


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory) -> Path:
    """One tiny finished search whose winner was exported to every float format, shared
    by the export and predict tests (read it; copy before changing anything)."""
    return train_tiny_run(
        tmp_path_factory.mktemp("exported"), export=["saved_model", "onnx", "tflite"]
    )


def quick_search(folder, out, **settings):
    """A search in this process of up to 3 trials of 2 epochs of the test architectures."""
    from automl_core.engine.search import search
    from automl_core.engine.settings import SearchConfig

    config = dict(
        source=str(folder),
        out=str(out),
        executor="inline",
        augmenters=["none"],
        architectures=["small"],
        plugins=[FAILURES],
        max_trials=3,
        epochs=2,
        refit=False,
    )
    return search(SearchConfig(**(config | settings)))
