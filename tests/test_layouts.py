"""Which layout a folder is read as: stray folders, automl's own runs, empty classes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_image_folder, run_automl
from PIL import Image

from automl_core.data.scan import scan
from automl_plugins.image_folder import load_image_folder

CLASS_FOLDERS, SPLIT_FOLDERS = "class folders", "train/val/test folders"


def _run_folder(folder: Path) -> Path:
    """What ``automl search`` leaves: config.json, state.json and report plots."""
    (folder / "report").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "state.json").write_text('{"status": "finished"}')
    Image.new("RGB", (16, 16), (9, 9, 9)).save(folder / "report" / "curves.png")
    return folder


def _junk(root: Path) -> None:
    """Folders a real dataset folder collects that are never data."""
    (root / "__MACOSX" / "red").mkdir(parents=True)
    (root / "__MACOSX" / "red" / "._000.jpg").write_bytes(b"\x00\x05\x16\x07 mac metadata")
    (root / "lost+found").mkdir()
    Image.new("RGB", (16, 16)).save(root / "lost+found" / "#1234.png")
    _run_folder(root / "runs" / "20250101-120000")
    (root / "runs" / "latest").symlink_to("20250101-120000")
    (root / ".git").mkdir()


def _reasons(found) -> dict[str, str]:
    root = Path(found.source)
    return {str(Path(s["path"]).relative_to(root)): s["reason"] for s in found.skipped}


def _split_with_stray_folder(root: Path, per_class: int = 4) -> Path:
    """``train/`` and ``val/`` of red and blue, and a ``notebooks/`` beside them."""
    make_image_folder(root / "train", classes=("red", "blue"), per_class=per_class)
    make_image_folder(root / "val", classes=("red", "blue"), per_class=2)
    make_image_folder(root / "notebooks", classes=("plots",), per_class=1)
    return root


def test_split_layout_survives_stray_folders_and_names_them(tmp_path):
    root = _split_with_stray_folder(tmp_path / "data")
    _junk(root)
    found = scan(root)
    assert found.layout == SPLIT_FOLDERS
    assert "train/, val/" in found.reason
    assert sorted(set(found.labels)) == ["blue", "red"]
    assert len(found.paths) == 12
    reasons = _reasons(found)
    assert reasons["__MACOSX"].startswith("ignored: macOS")
    assert reasons["lost+found"].startswith("ignored: file system")
    assert reasons["runs"] == "ignored: automl run folders (runs/)"
    assert reasons[".git"] == "hidden folder"
    assert "unused in a train/val/test layout" in reasons["notebooks"]
    assert found.warnings == [
        "notebooks/ left out: beside train/, val/ only those folders are read; "
        "move the others out of the dataset folder"
    ]


def test_train_and_test_without_val_is_a_split_layout(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root / "train", classes=("red", "blue"), per_class=4)
    make_image_folder(root / "test", classes=("red", "blue"), per_class=2)
    data = load_image_folder(str(root), image_size=16)
    assert data.layout == SPLIT_FOLDERS
    assert data.class_names == ["blue", "red"]
    assert data.subset_counts() == {"train": 8, "val": 0, "test": 4}


def test_class_folders_ignore_automl_runs_and_junk(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=4)
    _junk(root)
    _run_folder(root / "my-search")  # automl search . --out my-search
    data = load_image_folder(str(root), image_size=16)
    assert data.layout == CLASS_FOLDERS
    assert data.class_names == ["blue", "red"]
    assert len(data.labels) == 8
    reasons = {Path(s["path"]).name: s["reason"] for s in data.skipped}
    assert reasons["my-search"] == "ignored: an automl run folder"
    assert reasons["runs"] == "ignored: automl run folders (runs/)"
    assert data.summary()["warnings"] == []


def test_a_class_named_runs_without_runs_in_it_is_a_class(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("runs", "walks"), per_class=3)
    assert sorted(set(scan(root).labels)) == ["runs", "walks"]


def test_empty_and_unreadable_classes_are_warned_about(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=3)
    (root / "green").mkdir()
    (root / "grey").mkdir()
    (root / "grey" / "notes.jpg").write_text("not an image")
    data = load_image_folder(str(root), image_size=16)
    assert data.class_names == ["blue", "red"]
    assert data.warnings == [
        f"class folder {root / 'green'} has no files: no 'green' images",
        "class 'grey' left out: none of its files is a readable image",
    ]


def test_inspect_prints_the_layout_its_reason_and_warnings(tmp_path):
    root = _split_with_stray_folder(tmp_path / "data", per_class=3)
    _junk(root)
    out = run_automl("inspect", root, env={"COLUMNS": "500"})  # no wrapped lines
    assert out.returncode == 0, out.stderr
    assert "layout: train/val/test folders: train/, val/ at the top" in out.stdout
    assert "warning: notebooks/ left out" in out.stdout
    assert "ignored: automl run folders (runs/)" in out.stdout
    report = json.loads(run_automl("inspect", root, "--json").stdout)
    assert report["layout"] == SPLIT_FOLDERS
    assert sorted(report["classes"]) == ["blue", "red"]
    assert len(report["warnings"]) == 1


def test_a_search_prints_the_layout_warnings_before_it_trains(tmp_path):
    root = _split_with_stray_folder(tmp_path / "data")
    out = run_automl(
        "search", root, "--architectures", "baseline_cnn", "--augmenters", "none",
        "--max-trials", "1", "--epochs", "1", "--out", tmp_path / "run",
        env={"COLUMNS": "500"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "2 classes" in out.stdout and "warning: notebooks/ left out" in out.stdout
    assert "up to 1 trials, 1 epochs at most each" in out.stdout
