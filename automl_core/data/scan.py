"""Find the images of a dataset source and their labels, without decoding anything.

Three layouts: one subfolder per class; ``train/`` + ``val/`` and/or ``test/`` folders each
holding class subfolders; a CSV of ``path,label`` (optionally ``,split``). A folder is
taken as train/val/test folders when it holds ``train/`` and ``val/`` (or ``valid/``,
``validation/``) or ``test/``; any other folder beside them is left out with a warning.
Folders that are never data are ignored and listed: hidden ones, ``__MACOSX``,
``lost+found`` and automl's own run folders (and a ``runs/`` holding them). Files are not
judged by extension (the decoder identifies them by content); hidden and empty files,
broken links and link loops are set aside with a reason.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from automl_core.data.dataset import SUBSETS, TEST, TRAIN, UNASSIGNED, VAL
from automl_core.errors import UsageError
from automl_core.rundir import RunDir

SUBSET_FOLDERS = {"train": TRAIN, "val": VAL, "valid": VAL, "validation": VAL, "test": TEST}
CLASS_FOLDERS, SPLIT_FOLDERS, CSV = "class folders", "train/val/test folders", "csv"
JUNK_FOLDERS = {"__MACOSX": "macOS archive metadata", "lost+found": "file system recovery"}
"""Folders that archives and file systems leave, by name -> what they are."""
RUNS = "runs"
INODE_BITS = 2**63 - 1
"""An inode folded into 63 bits: the cache keeps keys as signed 64-bit integers."""


@dataclass
class Scan:
    """The candidate image files of a source, in a stable order."""

    source: str
    layout: str
    reason: str = ""
    """Why this layout was chosen, for ``automl inspect``."""
    paths: list[str] = field(default_factory=list)
    stats: list[tuple[int, int, int, int]] = field(default_factory=list)
    """``(size, mtime_ns, ctime_ns, inode)`` per path: with the path, the cache key of its
    decoded pixels (ctime and inode catch a file rewritten keeping its size and mtime)."""
    labels: list[str] = field(default_factory=list)
    subsets: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What a user should know about how the source was read: folders left out, empty classes."""

    def add(self, path: str, stat: os.stat_result, label: str, subset: int) -> None:
        if stat.st_size == 0:
            self.skip(path, "empty file (0 bytes)")
            return
        self.paths.append(path)
        inode = stat.st_ino & INODE_BITS
        self.stats.append((stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, inode))
        self.labels.append(label)
        self.subsets.append(subset)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})


def scan(source: str | Path, subset: int | None = None) -> Scan:
    """List the images of ``source`` (folder or CSV); ``subset`` forces one for every file."""
    root = Path(source)
    if not root.exists():
        raise UsageError(f"folder {str(root)!r} does not exist")
    if root.is_file() and root.suffix.lower() == ".csv":
        found = _scan_csv(root)
    elif not root.is_dir():
        raise UsageError(
            f"{str(root)!r} is not a folder of class subfolders or a CSV of path,label"
        )
    else:
        found = _scan_folder(root.resolve())
    if subset is not None:
        found.subsets = [subset] * len(found.paths)
    return found


def _scan_folder(root: Path) -> Scan:
    seen = {_identity(root)}
    found = Scan(str(root), CLASS_FOLDERS)
    top = _children(root, seen, found)
    dirs = {name: path for name, path, is_dir in top if is_dir}
    splits = {name: path for name, path in dirs.items() if name.lower() in SUBSET_FOLDERS}
    kinds = {SUBSET_FOLDERS[name.lower()] for name in splits}
    if TRAIN in kinds and len(kinds) > 1:
        _scan_splits(found, top, splits, seen)
    else:
        found.reason = "no train/ beside val/ or test/ at the top, so each subfolder is a class"
        _scan_classes(found, top, UNASSIGNED, seen)
    if not dirs:
        what = "is empty" if not top else "has no class subfolders"
        raise UsageError(
            f"folder {str(root)!r} {what}: expected one subfolder of images per class, "
            f"e.g. {root / 'cat'}/1.jpg"
        )
    return found


def _scan_splits(found: Scan, top: list, splits: dict[str, str], seen: set) -> None:
    """The train/val/test layout: class folders inside each split folder; the rest unused."""
    names = ", ".join(f"{name}/" for name in sorted(splits))
    found.layout = SPLIT_FOLDERS
    found.reason = f"{names} at the top, so the images are split as those folders say"
    others = [(name, path, is_dir) for name, path, is_dir in top if name not in splits]
    for _, path, _ in others:
        found.skip(path, f"not inside {names}: unused in a train/val/test layout")
    if folders := [f"{name}/" for name, _, is_dir in others if is_dir]:
        found.warnings.append(
            f"{', '.join(folders)} left out: beside {names} only those folders are read; "
            "move the others out of the dataset folder"
        )
    for name, path in sorted(splits.items()):
        subset = SUBSET_FOLDERS[name.lower()]
        _scan_classes(found, _children(Path(path), seen, found), subset, seen)


def _scan_classes(found: Scan, entries: list, subset: int, seen: set) -> None:
    """Each folder in ``entries`` is a class holding images at any depth."""
    for name, path, is_dir in entries:
        if not is_dir:
            found.skip(path, "not inside a class folder")
            continue
        before = len(found.paths)
        for file, stat in _walk(Path(path), seen, found):
            found.add(file, stat, name, subset)
        if len(found.paths) == before:
            found.warnings.append(f"class folder {path} has no files: no {name!r} images")


def _children(folder: Path, seen: set, found: Scan) -> list[tuple[str, str, bool]]:
    """``(name, path, is_dir)`` of a folder's entries that may be data, sorted; the rest
    skipped with the reason."""
    children = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                found.skip(entry.path, f"hidden {kind}")
                continue
            try:
                is_dir = entry.is_dir()
                ignored = _not_data(entry.name, Path(entry.path)) if is_dir else None
                if ignored:
                    found.skip(entry.path, f"ignored: {ignored}")
                    continue
                if is_dir and entry.is_symlink():
                    identity = _identity(Path(entry.path))
                    if identity in seen:
                        found.skip(entry.path, "link to a folder already scanned (loop)")
                        continue
                    seen.add(identity)
                elif not is_dir and not entry.is_file():
                    reason = "broken link" if entry.is_symlink() else "not a regular file"
                    found.skip(entry.path, reason)
                    continue
            except OSError as error:
                found.skip(entry.path, f"unreadable: {error.strerror or error}")
                continue
            children.append((entry.name, entry.path, is_dir))
    return children


def _not_data(name: str, folder: Path) -> str | None:
    """Why a folder is never data (``None`` if it may be): what archives and file systems
    leave, automl's own run folders. A folder that cannot be read may be data: reading
    it then fails with an error that names it, rather than a class going missing."""
    if name in JUNK_FOLDERS:
        return f"{JUNK_FOLDERS[name]} ({name})"
    try:
        if _is_run(folder):
            return "an automl run folder"
        if name == RUNS and any(_is_run(child) for child in folder.iterdir()):
            return "automl run folders (runs/)"
    except OSError:
        return None
    return None


def _is_run(folder: Path) -> bool:
    """Whether ``folder`` is a search's run directory."""
    run = RunDir(folder)
    return run.config.is_file() and run.state.is_file()


def _walk(folder: Path, seen: set, found: Scan):
    """Every file under ``folder`` at any depth, following each linked folder once."""
    seen.add(_identity(folder))
    for _, path, is_dir in _children(folder, seen, found):
        if is_dir:
            yield from _walk(Path(path), seen, found)
        else:
            try:
                yield path, os.stat(path)
            except OSError as error:
                found.skip(path, f"unreadable: {error.strerror or error}")


def _identity(folder: Path) -> tuple[int, int]:
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def _scan_csv(path: Path) -> Scan:
    found = Scan(str(path), CSV, "a CSV file of path,label")
    base = path.resolve().parent
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise UsageError(f"{str(path)!r} lists no images: expected rows of path,label")
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not row[1].strip():
            raise UsageError(f"{str(path)!r} row {number}: expected path,label, got {row!r}")
        subset = UNASSIGNED
        if len(row) > 2 and row[2].strip():
            if row[2].strip().lower() not in SUBSET_FOLDERS:
                raise UsageError(
                    f"{str(path)!r} row {number}: split must be one of {', '.join(SUBSETS)}"
                )
            subset = SUBSET_FOLDERS[row[2].strip().lower()]
        file = str(base / row[0].strip())
        try:
            found.add(file, os.stat(file), row[1].strip(), subset)
        except OSError as error:
            found.skip(file, f"unreadable: {error.strerror or error}")
    return found
