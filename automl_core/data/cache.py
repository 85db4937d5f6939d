"""The decode-once image cache: per-file entries, memory-mapped rows, parallel decoding.

One store per target size: ``chunks/*.npy`` hold decoded uint8 rows, and an SQLite index
maps each file's path to its row, keyed by the file's size, modification time, status
change time and inode (so a file rewritten in place keeping its size and mtime is seen),
or records why the file is not a usable image. A file that could not be read at all
(permissions, I/O) is never recorded: the next load tries it again. A changed, added or
removed file re-decodes only that file. When the rows a dataset needs are not one
contiguous run of one chunk, they are copied (disk to disk) into a new chunk, so the next
load is a single memory map. Each listing loaded (every path with its key, in order) is
remembered by its digest with where its rows are, so an unchanged folder maps its rows
straight away, without looking up each file.

Loads of one store take turns (a lock file), so searches started together never see each
other's half-written chunks or lose a chunk to the other's compaction; each load first
removes chunk files the index does not name (left by a killed writer). The store is
readable by its owner only: folders 0o700, files 0o600.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl_core.data.decode import decode_image

CACHE_VERSION = 4
BATCH = 2048
"""Most files per parallel task: large enough to amortise a task, small enough for progress."""
TASKS_PER_WORKER = 4
"""Tasks per worker at least (when files allow): slow files even out across workers."""
INLINE_BELOW = 64
"""Fewer files than this decode in this process: starting workers would cost more."""
COPY_ROWS = 4096
"""Rows copied at a time when compacting, so memory stays bounded for any dataset size."""
CACHE_ENV = "AUTOML_CACHE_DIR"
UNREADABLE = "unreadable: "
"""How the reason for a file that could not be read begins: never cached, tried again."""


def cache_root() -> Path:
    """``$AUTOML_CACHE_DIR``, else ``~/.cache/automl``: the decoded images, the precision probe."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "automl")


@dataclass
class Loaded:
    """What one ``ImageCache.load`` found: the usable rows and what it cost."""

    images: np.ndarray
    """uint8 ``(n_good, size, size, 3)``, memory-mapped, in the order of the paths given."""
    errors: dict[int, str]
    """Index of each path that could not be used -> why."""
    decoded: int
    reused: int
    by_listing: bool = False
    """Found by the whole listing's digest, without looking up any file in the index."""


class ImageCache:
    """Decoded images of one target size under ``root``, shared by every dataset."""

    def __init__(self, root: Path, size: int):
        self.size = size
        self.path = Path(root) / f"v{CACHE_VERSION}" / f"size-{size}"
        self.chunks = self.path / "chunks"
        private_folder(self.chunks)
        self._lock = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        index = self.path / "index.sqlite"
        os.close(os.open(index, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's journals copy
        self.db = sqlite3.connect(index, timeout=60, isolation_level=None)  # its mode
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime INTEGER, ctime INTEGER, inode INTEGER, chunk TEXT, row INTEGER, error TEXT)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS listings (digest TEXT PRIMARY KEY, chunk TEXT, "
            "start INTEGER, count INTEGER, errors TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS chunks (name TEXT PRIMARY KEY)")

    def close(self) -> None:
        self.db.close()
        os.close(self._lock)

    def load(self, paths: Sequence[str], stats: Sequence[tuple[int, ...]]) -> Loaded:
        """The decoded pixels of ``paths``, decoding only files new or changed since cached.

        ``stats`` holds each path's ``(size, mtime_ns, ctime_ns, inode)``. Other loads of
        this store wait until this one is done.
        """
        with self._locked():
            self._collect()
            digest = listing_digest(paths, stats)
            return self._recall(digest, len(paths)) or self._load(paths, stats, digest)

    def _load(self, paths, stats, digest: str) -> Loaded:
        """``load`` looking up each file in the index."""
        known = {path: tuple(entry) for path, *entry in self.db.execute("SELECT * FROM files")}
        entries, todo = [], []
        for i, (path, stat) in enumerate(zip(paths, stats, strict=True)):
            entry = known.get(path)
            if entry is None or entry[:4] != tuple(stat):
                todo.append(i)
                entries.append(None)
            else:
                entries.append(entry[4:])
        if todo:
            for i, entry in zip(todo, self._decode(paths, stats, todo), strict=True):
                entries[i] = entry
        errors = {i: error for i, (_, _, error) in enumerate(entries) if error is not None}
        rows = [(chunk, row) for chunk, row, error in entries if error is None]
        where = self._contiguous(rows) if rows else (None, 0)
        if where is None:
            where = self._compact(paths, entries, rows)
        if not any(error.startswith(UNREADABLE) for error in errors.values()):
            self.db.execute(
                "INSERT OR REPLACE INTO listings VALUES (?, ?, ?, ?, ?)",
                (digest, *where, len(rows), json.dumps(errors)),
            )
        images = self._rows(*where, len(rows))
        return Loaded(images, errors, decoded=len(todo), reused=len(paths) - len(todo))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process alone in the store (other loads wait), until the block ends. A POSIX
        record lock: the kernel drops it when the process dies, and forked decoders do not
        inherit it (a decoder orphaned by a killed search cannot keep the store locked)."""
        fcntl.lockf(self._lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._lock, fcntl.LOCK_UN)

    def _collect(self) -> None:
        """Remove the chunk files the index does not name: left by a writer that was killed
        (no writer is in flight while this process holds the lock)."""
        named = {name for (name,) in self.db.execute("SELECT name FROM chunks")}
        for name in os.listdir(self.chunks):
            if name not in named:
                (self.chunks / name).unlink(missing_ok=True)

    def _recall(self, digest: str, files: int) -> Loaded | None:
        """The rows of a listing loaded before, unchanged since; ``None`` if not known."""
        known = self.db.execute(
            "SELECT chunk, start, count, errors FROM listings WHERE digest = ?", (digest,)
        ).fetchone()
        if known is None:
            return None
        chunk, start, count, errors = known
        try:
            images = self._rows(chunk, start, count)
        except FileNotFoundError:  # removed by hand: look up each file instead
            return None
        errors = {int(i): error for i, error in json.loads(errors).items()}
        return Loaded(images, errors, decoded=0, reused=files, by_listing=True)

    def _rows(self, chunk: str | None, start: int, count: int) -> np.ndarray:
        """Rows ``start...start+count`` of a chunk, memory-mapped."""
        if not count:
            return np.zeros((0, *self._row), dtype=np.uint8)
        return np.load(self.chunks / chunk, mmap_mode="r")[start : start + count]

    def _new_chunk(self, rows: int) -> str:
        """A new chunk file of ``rows`` zeroed rows, created exclusively under a name no one
        can guess; the index names it only once its rows are written."""
        handle, path = tempfile.mkstemp(".npy", "chunk-", self.chunks)
        try:
            target = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.uint8, shape=(rows, *self._row)
            )
            del target  # sized on disk; the writers write into it
            # a sized file is sparse: its blocks are taken now, so that a full disk is an
            # error here, not a SIGBUS in a process writing into the mapped file
            os.posix_fallocate(handle, 0, os.path.getsize(path))
        except OSError as error:
            os.unlink(path)
            raise OSError(error.errno, error.strerror, path) from None
        finally:
            os.close(handle)
        return Path(path).name

    def _decode(self, paths, stats, todo: list[int]) -> list[tuple]:
        chunk = self._new_chunk(len(todo))
        batches = [
            (str(self.chunks / chunk), self.size, part.start, [paths[i] for i in todo[part]])
            for part in batch_slices(len(todo))
        ]
        errors = run_parallel(decode_rows, batches, len(todo), "decoding images")
        entries = [
            (None, None, error) if error else (chunk, row, None) for row, error in enumerate(errors)
        ]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO chunks VALUES (?)", (chunk,))
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (paths[i], *stats[i], chunk, row, error)
                for i, (chunk, row, error) in zip(todo, entries, strict=True)
                if not (error or "").startswith(UNREADABLE)
            ],
        )
        self.db.execute("COMMIT")
        return entries

    def _contiguous(self, rows: list[tuple[str, int]]) -> tuple[str, int] | None:
        """``(chunk, first row)`` when ``rows`` are a contiguous run of one chunk, else ``None``."""
        chunk, start = rows[0]
        if any(c != chunk or r != start + k for k, (c, r) in enumerate(rows)):
            return None
        return chunk, start

    def _compact(self, paths, entries, rows) -> tuple[str, int]:
        """Copy the needed rows into one new chunk, point the index at it, drop dead chunks
        (and the listings in them) and the entries of files that no longer exist."""
        chunk = self._new_chunk(len(rows))
        target = np.load(self.chunks / chunk, mmap_mode="r+")
        sources = {}
        for start in range(0, len(rows), COPY_ROWS):
            for k, (source, row) in enumerate(rows[start : start + COPY_ROWS], start):
                if source not in sources:
                    sources[source] = np.load(self.chunks / source, mmap_mode="r")
                target[k] = sources[source][row]
        target.flush()
        del target, sources
        good = [paths[i] for i, (_, _, error) in enumerate(entries) if error is None]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO chunks VALUES (?)", (chunk,))
        self.db.executemany(
            "UPDATE files SET chunk = ?, row = ? WHERE path = ?",
            [(chunk, row, path) for row, path in enumerate(good)],
        )
        others = self.db.execute("SELECT path FROM files WHERE chunk IS NOT ?", (chunk,))
        gone = [(path,) for (path,) in others if not os.path.exists(path)]
        self.db.executemany("DELETE FROM files WHERE path = ?", gone)  # removed files
        live = {c for (c,) in self.db.execute("SELECT DISTINCT chunk FROM files")}
        dead = [(c,) for (c,) in self.db.execute("SELECT name FROM chunks") if c not in live]
        self.db.executemany("DELETE FROM listings WHERE chunk = ?", dead)
        self.db.executemany("DELETE FROM chunks WHERE name = ?", dead)
        self.db.execute("COMMIT")
        for (name,) in dead:  # a kill before this leaves them to the next _collect
            (self.chunks / name).unlink(missing_ok=True)
        return chunk, 0

    @property
    def _row(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3)


def private_folder(path: Path) -> None:
    """Create ``path`` and its missing parents, each accessible by its owner only."""
    if not path.parent.exists():
        private_folder(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)


def listing_digest(paths: Sequence[str], stats: Sequence[tuple[int, ...]]) -> str:
    """A digest of every path with its cache key, in order: one pass over the listing the
    scan made anyway, equal only when no file was added, removed or changed."""
    digest = hashlib.blake2b("\0".join(paths).encode("utf-8", "surrogateescape"))
    digest.update(array.array("q", [value for stat in stats for value in stat]).tobytes())
    return digest.hexdigest()


def batch_slices(total: int) -> list[slice]:
    """``total`` items cut into tasks for ``run_parallel``: a few per worker, at most BATCH."""
    size = max(1, min(BATCH, -(-total // (TASKS_PER_WORKER * workers()))))
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def decode_rows(chunk: str, size: int, start: int, paths: list[str]) -> list[str | None]:
    """Decode ``paths`` into rows ``start...`` of a chunk file; each item's error or ``None``."""
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large, not a bomb
    rows = np.load(chunk, mmap_mode="r+")
    errors = []
    for row, path in enumerate(paths, start):
        try:
            rows[row] = decode_image(path, size)
            errors.append(None)
        except Exception as error:  # any bad file is skipped with its reason, never fatal
            errors.append(describe_error(error))
    rows.flush()
    return errors


def describe_error(error: Exception) -> str:
    """Why a file is not a usable image, in a few words a user understands."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image (content not recognised)"
    if isinstance(error, OSError) and error.errno is not None:  # opening or reading failed
        return UNREADABLE + (error.strerror or str(error))
    if isinstance(error, Image.DecompressionBombError):
        return f"decompression bomb (Pillow's guard): {str(error).split(', could be')[0]}"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "truncated" in message:
        return f"truncated image: {message}"
    return f"corrupt image: {type(error).__name__}: {message}"


def workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run_parallel(
    function: Callable[..., list], batches: list[tuple], total: int, description: str
) -> list:
    """``function(*batch)`` for every batch across cores, results concatenated in order.

    A rich progress bar shows on a terminal (stderr); nothing is printed otherwise.
    Workers are forked processes, since decoding small images is bound by the GIL; once
    TensorFlow runs in this process (its threads make forking unsafe) they are threads,
    which still overlap Pillow's decoding and resizing of large images.
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    results: list[list | None] = [None] * len(batches)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        if total < INLINE_BELOW or workers() == 1:
            for k, batch in enumerate(batches):
                results[k] = function(*batch)
                bar.advance(task, len(results[k]))
        else:
            with _pool(min(workers(), len(batches))) as pool:
                futures = {pool.submit(function, *batch): k for k, batch in enumerate(batches)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(task, len(results[futures[future]]))
    return [item for result in results for item in result]


def _pool(size: int) -> Executor:
    if "tensorflow" in sys.modules:
        return ThreadPoolExecutor(size)
    return ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("fork"))
