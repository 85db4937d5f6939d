"""Find the images of a dataset source and their labels, without decoding anything.

Three layouts: one subfolder per class; ``train/`` + ``val/`` (+ ``test/``) folders each
holding class subfolders; a CSV of ``path,label`` (optionally ``,split``). Files are not
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

SUBSET_FOLDERS = {"train": TRAIN, "val": VAL, "valid": VAL, "validation": VAL, "test": TEST}


@dataclass
class Scan:
    """The candidate image files of a source, in a stable order."""

    source: str
    layout: str
    paths: list[str] = field(default_factory=list)
    stats: list[tuple[int, int]] = field(default_factory=list)
    """``(size, mtime_ns)`` per path: with the path, the cache key of its decoded pixels."""
    labels: list[str] = field(default_factory=list)
    subsets: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, path: str, stat: os.stat_result, label: str, subset: int) -> None:
        if stat.st_size == 0:
            self.skip(path, "empty file (0 bytes)")
            return
        self.paths.append(path)
        self.stats.append((stat.st_size, stat.st_mtime_ns))
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
    found = Scan(str(root), "class folders")
    top = _children(root, seen, found)
    dirs = {name: path for name, path, is_dir in top if is_dir}
    splits = {name.lower() for name in dirs}
    if {"train"} <= splits <= set(SUBSET_FOLDERS) and splits & {"val", "valid", "validation"}:
        found.layout = "train/val/test folders"
        for name, path in sorted(dirs.items()):
            _scan_classes(
                found, _children(Path(path), seen, found), SUBSET_FOLDERS[name.lower()], seen
            )
    else:
        _scan_classes(found, top, UNASSIGNED, seen)
    if not dirs:
        what = "is empty" if not top else "has no class subfolders"
        raise UsageError(
            f"folder {str(root)!r} {what}: expected one subfolder of images per class, "
            f"e.g. {root / 'cat'}/1.jpg"
        )
    return found


def _scan_classes(found: Scan, entries: list, subset: int, seen: set) -> None:
    """Each folder in ``entries`` is a class holding images at any depth."""
    for name, path, is_dir in entries:
        if not is_dir:
            found.skip(path, "not inside a class folder")
            continue
        for file, stat in _walk(Path(path), seen, found):
            found.add(file, stat, name, subset)


def _children(folder: Path, seen: set, found: Scan) -> list[tuple[str, str, bool]]:
    """``(name, path, is_dir)`` of a folder's visible entries, sorted; the rest skipped."""
    children = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                found.skip(entry.path, f"hidden {kind}")
                continue
            try:
                is_dir = entry.is_dir()
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
    found = Scan(str(path), "csv")
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
