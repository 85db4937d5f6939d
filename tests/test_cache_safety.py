"""The image cache under real accidents: two searches at once, a killed writer, a file
edited in place, a read error that gets fixed, other users on the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from automl_core.data.cache import CACHE_VERSION, ImageCache
from automl_core.data.decode import decode_image
from automl_core.data.scan import scan
from automl_plugins.image_folder import load_image_folder

RED, BLUE = (200, 30, 30), (30, 30, 200)

LOADER = """
import sys, time
from pathlib import Path
import numpy as np
from automl_core.data.cache import ImageCache, cache_root
from automl_core.data.scan import scan

folder, go, out = sys.argv[1:]
found = scan(folder)
while not Path(go).exists():
    time.sleep(0.01)
for _ in range(30):  # each listing's rows are scattered by the one before: every load compacts
    for part in (slice(0, None, 2), slice(1, None, 2), slice(None)):
        cache = ImageCache(cache_root(), 16)
        try:
            loaded = cache.load(found.paths[part], found.stats[part])
        finally:
            cache.close()
        assert not loaded.errors, loaded.errors
np.save(out, loaded.images)
"""

BLOCKED_WRITER = """
import sys
from automl_core.data.cache import ImageCache, cache_root
ImageCache(cache_root(), 16).load([sys.argv[1]], [(1, 1, 1, 1)])  # reading a FIFO blocks
"""


def _load(cache_dir: Path, paths, stats):
    cache = ImageCache(cache_dir, 16)
    try:
        return cache.load(paths, stats)
    finally:
        cache.close()


def test_two_processes_loading_one_folder_at_once_both_get_its_pixels(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=10)
    go = tmp_path / "go"
    outputs = [tmp_path / f"{k}.npy" for k in range(2)]
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER, str(folder), str(go), str(out)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outputs
    ]
    go.touch()
    for loader in loaders:
        _, error = loader.communicate(timeout=600)
        assert loader.returncode == 0, error
    expected = np.stack([decode_image(path, 16) for path in scan(folder).paths])
    for out in outputs:
        assert np.array_equal(np.load(out), expected)


def test_a_killed_writers_chunk_is_removed_by_the_next_load(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=4)
    first = load_image_folder(str(folder), image_size=16)
    chunks = Path(first.cache) / "chunks"
    kept = set(os.listdir(chunks))
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", BLOCKED_WRITER, str(fifo)])
    try:
        deadline = time.monotonic() + 300  # a guard against hanging, not a measurement
        while set(os.listdir(chunks)) == kept:
            assert writer.poll() is None and time.monotonic() < deadline, "no chunk started"
            time.sleep(0.05)
    finally:
        writer.kill()
        writer.wait()
    assert len(set(os.listdir(chunks)) - kept) == 1  # what the killed writer left
    again = load_image_folder(str(folder), image_size=16)
    assert set(os.listdir(chunks)) == kept
    assert again.cache_stats == {"decoded": 0, "reused": 8}
    assert np.array_equal(again.images, first.images)


def test_a_file_rewritten_in_place_keeping_size_and_mtime_is_decoded_again(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=3)
    photo = folder / "red" / "photo.bmp"  # uncompressed: the same size whatever the colour
    Image.new("RGB", (16, 16), RED).save(photo)
    before = photo.stat()
    first = load_image_folder(str(folder), image_size=16)
    row = 3 + 3  # blue/ sorts first, then red/000...002, then photo.bmp
    assert np.abs(first.images[row].astype(int) - RED).max() < 10

    Image.new("RGB", (16, 16), BLUE).save(photo)  # like exiftool -P or cp -p onto it
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = photo.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = load_image_folder(str(folder), image_size=16)
    assert again.cache_stats == {"decoded": 1, "reused": 6}
    assert np.abs(again.images[row].astype(int) - BLUE).max() < 10


def test_a_file_that_could_not_be_read_is_tried_again(tmp_path, isolated_cache):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=3)
    found = scan(folder)
    away = tmp_path / "away.jpg"
    os.rename(found.paths[0], away)  # gone for a moment while a search loads
    first = _load(isolated_cache, found.paths, found.stats)
    assert first.errors == {0: "unreadable: No such file or directory"}
    os.rename(away, found.paths[0])  # the same file, the same key
    again = _load(isolated_cache, found.paths, found.stats)
    assert (again.errors, again.decoded, again.by_listing) == ({}, 1, False)
    assert np.array_equal(again.images[0], decode_image(found.paths[0], 16))
    assert _load(isolated_cache, found.paths, found.stats).by_listing  # now it is cached


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_permission_error_is_not_cached(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=3)
    locked = folder / "red" / "000.jpg"
    locked.chmod(0)
    try:
        first = load_image_folder(str(folder), image_size=16)
    finally:
        locked.chmod(0o644)
    assert [s["reason"] for s in first.skipped] == ["unreadable: Permission denied"]
    again = load_image_folder(str(folder), image_size=16)
    assert (again.skipped, len(again.labels)) == ([], 6)


def test_the_cache_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    root = tmp_path / "fresh" / "cache"
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(root))
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=3)
    (folder / "blue" / "bad.jpg").write_bytes(b"not an image")  # rows out of order: compacts
    umask = os.umask(0o022)
    try:
        load_image_folder(str(folder), image_size=16)
    finally:
        os.umask(umask)
    store = root / f"v{CACHE_VERSION}"
    made = [root.parent, root, store, *store.rglob("*")]
    modes = {path.name: path.stat().st_mode & 0o777 for path in made}
    assert {"chunks", "index.sqlite", "lock"} <= set(modes)
    assert modes == {path.name: 0o700 if path.is_dir() else 0o600 for path in made}, modes
