"""Pretrained weights files: Keras's cache, one download per file, offline, a mirror.

An architecture declares the files its factory loads by default (``weights=`` when it
registers: ``WeightsFile``s). The engine fetches the missing ones before a search's clock
starts, and ``automl weights`` lists, fetches and imports them. A file is downloaded with
``keras.utils.get_file`` (its progress bar), then checked against its published hash or,
where none is published, by loading it into its architecture, and only then moved into
place: a bad download never stays cached. A lock file beside it makes processes that
start together download it once; the others wait and find it cached.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
import time
import urllib.error
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl_core.errors import UsageError

OFFLINE_ENV = "AUTOML_OFFLINE"
"""``1`` (or ``true``, ``yes``): download nothing, as ``--offline``."""
MIRROR_ENV = "AUTOML_WEIGHTS_MIRROR"
"""A base URL serving the weights files by name, as ``--weights-mirror``."""
STALL_SECONDS = 60.0
"""A download that receives nothing for this long fails."""


class Unreachable(UsageError):
    """A download failed for want of a network or a server, not for a bad file."""


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained weights file an architecture loads by default."""

    name: str
    """Its name in Keras's cache (``$KERAS_HOME/models``), as Keras itself names it."""
    url: str
    """Where it is published."""
    file_hash: str | None
    """The published md5 or sha256; ``None``: none is published, loading checks it."""
    load: Callable[[Path], Any]
    """Builds the architecture and loads a file into it: the model, or an error when
    the file does not fit."""

    @property
    def path(self) -> Path:
        return models_dir() / self.name

    def origin(self, mirror: str | None) -> str:
        """The URL to download from: under ``mirror`` by name, else the published one."""
        return f"{mirror.rstrip('/')}/{self.name}" if mirror else self.url


def keras_home() -> Path:
    """Keras's folder: ``$KERAS_HOME``, default ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def models_dir() -> Path:
    """Where Keras caches pretrained weights."""
    return keras_home() / "models"


def any_cached(files: tuple[WeightsFile, ...]) -> bool:
    """Whether any of an architecture's declared ``weights=`` files is in the cache."""
    return any(file.path.is_file() for file in files)


def is_offline(setting: bool | None) -> bool:
    """The ``offline`` setting, else the ``AUTOML_OFFLINE`` environment variable."""
    if setting is not None:
        return setting
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def mirror_url(setting: str | None) -> str | None:
    """The ``weights_mirror`` setting, else the ``AUTOML_WEIGHTS_MIRROR`` variable."""
    return setting or os.environ.get(MIRROR_ENV) or None


def fetch(file: WeightsFile, mirror: str | None = None) -> Path:
    """``file`` in Keras's cache, downloaded and checked first if it is not there."""
    if not file.path.is_file():
        with _locked(file.path):
            if not file.path.is_file():  # another process may have fetched it meanwhile
                _download(file, file.origin(mirror))
    return file.path


def install(file: WeightsFile, source: Path) -> Path:
    """Put the weights in ``source`` in Keras's cache as ``file``, once they load into
    its architecture (saved in the format the cache's name stands for)."""
    try:
        model = check(file, source)
    except UsageError as error:
        raise UsageError(f"{source} {error}") from None
    with _locked(file.path):
        partial = _partial(file.path)
        try:
            with _quiet_absl():
                if file.name.endswith(".weights.h5"):
                    model.save_weights(partial)
                else:  # Keras's legacy HDF5, the format keras.applications publishes
                    model.save(partial)
            os.replace(partial, file.path)
        finally:
            partial.unlink(missing_ok=True)
    return file.path


def check(file: WeightsFile, path: Path) -> Any:
    """The architecture with the weights in ``path`` loaded; a ``UsageError`` when they do
    not fit it (a skipped part is a misfit too, not a warning)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return file.load(path)
    except Exception as error:
        raise UsageError(f"does not fit the architecture ({_first_line(error)})") from None


def fetch_for_search(
    declared: dict[str, tuple[WeightsFile, ...]],
    *,
    offline: bool,
    mirror: str | None,
    required: frozenset[str] = frozenset(),
) -> float:
    """Fetch the files the architectures of a search declare and the cache lacks; the
    seconds it took. Offline, or when a download fails, one warning line per architecture
    that trains from random initialisation where its files are missing, and one line for
    all those of ``required`` left out. A file that failed is not tried again."""
    started = time.monotonic()
    fetched: list[Path] = []
    failed: dict[Path, str] = {}
    left_out: dict[str, str] = {}
    unreachable = False
    for architecture, files in declared.items():
        missing = [file for file in files if not file.path.is_file()]
        if not missing:
            continue
        known = [failed[file.path] for file in missing if file.path in failed]
        why = ""
        if offline or unreachable or known:
            why = "offline" if offline else "the network failed above" if unreachable else known[0]
        else:
            print(f"automl: {architecture}: fetching {_count(missing)}", file=sys.stderr)
            for file in missing:
                try:
                    fetched.append(fetch(file, mirror))
                except UsageError as error:
                    unreachable = isinstance(error, Unreachable)  # the others are not tried
                    why = failed[file.path] = str(error)
                    break
        if why and architecture in required:
            left_out[architecture] = why
        elif why:
            why += f", and {_count(missing)} not in {models_dir()}"
            _warn(f"{architecture}: no pretrained weights ({why}): training it from random init")
    if left_out:
        names, why = ", ".join(left_out), next(iter(left_out.values()))
        _warn(f"left out, without their pretrained weights in {models_dir()} ({why}): {names}")
    seconds = time.monotonic() - started
    if fetched:
        size = sum(path.stat().st_size for path in fetched) / 1e6
        print(
            f"automl: {_count(fetched)} ready ({size:.1f} MB) in {seconds:.1f}s, before "
            "the search's clock started",
            file=sys.stderr,
        )
    return seconds


def _download(file: WeightsFile, origin: str) -> None:
    import keras

    partial = _partial(file.path)
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(STALL_SECONDS)
    try:
        got = keras.utils.get_file(
            partial.name,
            origin,
            file_hash=file.file_hash,
            cache_dir=str(keras_home()),
            cache_subdir="models",
            force_download=True,
        )
        if file.file_hash is None:
            check(file, Path(got))
        os.replace(got, file.path)
    except UsageError as error:
        raise UsageError(f"{origin}: the file {error}; nothing was cached") from None
    except ValueError as error:  # get_file's: the hash differs
        raise UsageError(f"{origin}: {_first_line(error)}; nothing was cached") from None
    except Exception as error:  # Keras re-raises HTTP and network errors as bare ones
        if isinstance(error.__context__, urllib.error.HTTPError):  # the server answered
            raise UsageError(f"{origin}: {_first_line(error)}; nothing was cached") from None
        raise Unreachable(
            f"{origin}: {_first_line(error)}; nothing was cached (no network? use --offline, "
            f"a mirror ({MIRROR_ENV}) or `automl weights import`)"
        ) from None
    finally:
        socket.setdefaulttimeout(timeout)
        partial.unlink(missing_ok=True)


def _partial(target: Path) -> Path:
    """Where ``target`` is written before it is complete (same folder, same suffix)."""
    return target.with_name(f".partial-{target.name}")


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold the lock file beside ``target``; say so when another process holds it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"automl: waiting for another process to fetch {target.name}", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """Without Keras's warning that HDF5 is a legacy format: the cache's names want it."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _warn(message: str) -> None:
    print(f"automl: warning: {message}", file=sys.stderr)


def _count(files: list) -> str:
    return f"{len(files)} pretrained weights file{'s' if len(files) != 1 else ''}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__
