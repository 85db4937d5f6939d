"""Ingesting messy real folders: every format, bad files, layouts, the cache, inspect."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, run_automl
from PIL import Image

from automl_core.data.cache import ImageCache
from automl_core.data.dataset import TEST, TRAIN, VAL, split
from automl_core.data.decode import decode_image
from automl_core.data.scan import scan
from automl_plugins.image_folder import load_image_folder

RED, BLUE = (200, 30, 30), (30, 30, 200)

# good special files in red/ (besides make_image_folder's plain ones), by name
GOOD = [
    "rgba.png",
    "grey16.png",
    "cmyk.jpg",
    "animated.gif",
    "rotated.jpg",
    "palette.png",
    "photo.webp",
    "scan.tiff",
    "old.bmp",
    "png_named.jpg",
    "deeper/nested/inner.png",
    "chat_é_猫.png",
]
# bad files -> the words their reason must contain
BAD = {
    "blue/truncated.jpg": "truncated",
    "blue/empty.jpg": "empty file",
    "blue/notes.jpg": "not an image",
    "blue/.hidden.jpg": "hidden file",
    "blue/bomb.png": "decompression bomb",
    "blue/dangling.jpg": "broken link",
    "blue/loop": "loop",
    "README.txt": "not inside a class folder",
}


def _solid(colour, size=(16, 16), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def _bomb_png() -> bytes:
    """A tiny PNG whose header claims 30000x30000 pixels: Pillow's bomb guard trips."""
    buffer = io.BytesIO()
    _solid(0, (1, 1), "L").save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, 30000, 30000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def messy_folder(root: Path) -> Path:
    """Two learnable classes plus every awkward case the issue lists."""
    make_image_folder(root, classes=("red", "blue"), per_class=8)
    red = root / "red"
    rgba = _solid((*RED, 255), mode="RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(red / "rgba.png")
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(red / "grey16.png")
    _solid((0, 255, 255, 0), mode="CMYK").save(red / "cmyk.jpg")  # CMYK red
    frames = [_solid(RED), _solid(BLUE)]
    frames[0].save(red / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    rotated = np.zeros((10, 20, 3), np.uint8)
    rotated[:, :10], rotated[:, 10:] = RED, BLUE  # left red, right blue ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... shown turned 90 degrees clockwise: red on top
    Image.fromarray(rotated).save(red / "rotated.jpg", exif=exif, quality=95)
    palette = _solid(RED).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(red / "palette.png", transparency=255)
    _solid(RED).save(red / "photo.webp")
    _solid(RED).save(red / "scan.tiff")
    _solid(RED).save(red / "old.bmp")
    _solid(RED).save(red / "png_named.jpg", format="PNG")
    (red / "deeper" / "nested").mkdir(parents=True)
    _solid(RED).save(red / "deeper" / "nested" / "inner.png")
    _solid(RED).save(red / "chat_é_猫.png")

    blue = root / "blue"
    (blue / "copy_of_red_000.jpg").write_bytes((red / "000.jpg").read_bytes())
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(
        jpeg, "JPEG"
    )
    (blue / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (blue / "empty.jpg").write_bytes(b"")
    (blue / "notes.jpg").write_text("shopping list, not a photo")
    _solid(BLUE).save(blue / ".hidden.jpg")
    (blue / "bomb.png").write_bytes(_bomb_png())
    (blue / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (blue / "loop").symlink_to(blue, target_is_directory=True)
    (root / "README.txt").write_text("photos of red and blue things")
    return root


def test_every_format_decodes_to_the_right_pixels(tmp_path):
    red = messy_folder(tmp_path / "images") / "red"
    for name in GOOD:
        pixels = decode_image(red / name, 16).astype(int)
        assert pixels.shape == (16, 16, 3), name
        if name not in ("rotated.jpg", "grey16.png"):
            assert np.abs(pixels[8, 8] - RED).max() < 60, name  # red, first frame, composited
    rgba = decode_image(red / "rgba.png", 16)
    assert rgba[0, 0].tolist() == [255, 255, 255]  # transparent pixel onto white
    grey = decode_image(red / "grey16.png", 16)
    assert (grey == 128).all()  # 16-bit scaled, not clipped to white
    rotated = decode_image(red / "rotated.jpg", 16).astype(int)
    assert np.abs(rotated[2, 8] - RED).max() < 40  # EXIF orientation applied
    assert np.abs(rotated[13, 8] - BLUE).max() < 40


def test_messy_folder_search_uses_every_good_image_and_lists_every_bad_one(tmp_path):
    folder = messy_folder(tmp_path / "images")
    test_folder = make_image_folder(tmp_path / "test", classes=("red", "blue"), per_class=3)
    run_dir = tmp_path / "run"
    out = run_automl(
        "search", folder, "--max-trials", "1", "--epochs", "1", "--image-size", "16",
        "--test", test_folder, "--out", run_dir,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    dataset = json.loads((run_dir / "dataset.json").read_text())
    assert dataset["counts"] == {"blue": 8 + 1, "red": 8 + len(GOOD)}
    assert dataset["train"] + dataset["val"] == 16 + 1 + len(GOOD)
    reasons = {str(Path(s["path"]).relative_to(folder)): s["reason"] for s in dataset["skipped"]}
    assert set(reasons) == set(BAD)
    for path, words in BAD.items():
        assert words in reasons[path], (path, reasons[path])
    assert f"{len(BAD)} unreadable file(s) skipped" in out.stdout
    assert "decompression bomb" in out.stdout

    metrics = json.loads((run_dir / "winner" / "test_metrics.json").read_text())
    assert metrics["images"] == 6
    assert 0 <= metrics["accuracy"] <= 1
    assert np.array(metrics["confusion_matrix"]).sum() == 6
    assert metrics["classes"] == ["blue", "red"]
    assert "Test accuracy" in out.stdout


def test_second_load_decodes_nothing_and_a_touched_file_alone_is_redecoded(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=6)
    first = load_image_folder(str(folder), image_size=16)
    assert first.cache_stats == {"decoded": 12, "reused": 0}
    again = load_image_folder(str(folder), image_size=16)
    assert again.cache_stats == {"decoded": 0, "reused": 12}
    assert np.array_equal(first.images, again.images)

    touched = folder / "red" / "003.png"
    _solid(BLUE).save(touched)
    os.utime(touched, ns=(1, 1))  # a new modification time
    changed = load_image_folder(str(folder), image_size=16)
    assert changed.cache_stats == {"decoded": 1, "reused": 11}
    row = 6 + 3  # blue/ sorts first, then red/000..003
    assert np.abs(changed.images[row].astype(int) - BLUE).max() < 40

    (folder / "blue" / "000.jpg").unlink()
    _solid(RED).save(folder / "red" / "new.png")
    edited = load_image_folder(str(folder), image_size=16)
    assert edited.cache_stats == {"decoded": 1, "reused": 11}
    assert len(edited.labels) == 12
    settled = load_image_folder(str(folder), image_size=16)
    assert settled.cache_stats == {"decoded": 0, "reused": 12}
    chunks = list((Path(settled.cache) / "chunks").iterdir())
    assert len(chunks) == 1  # rows copied into one memory map, the old chunks removed


def test_an_unchanged_folder_is_found_by_its_listing_without_per_file_lookups(
    tmp_path, isolated_cache
):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=4)
    (folder / "blue" / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")

    def load():
        found = scan(folder)
        cache = ImageCache(isolated_cache, 16)
        try:
            return cache.load(found.paths, found.stats)
        finally:
            cache.close()

    first = load()
    assert (first.by_listing, first.decoded, list(first.errors)) == (False, 9, [4])  # bad.jpg
    again = load()
    assert (again.by_listing, again.decoded, again.reused) == (True, 0, 9)
    assert again.errors == first.errors
    assert np.array_equal(again.images, first.images)

    touched = folder / "red" / "000.jpg"
    before = touched.stat().st_mtime_ns
    os.utime(touched, ns=(before + 10**9, before + 10**9))
    changed = load()
    assert (changed.by_listing, changed.decoded) == (False, 1)
    assert load().by_listing
    os.utime(touched, ns=(before, before))  # the old mtime, but a new status change time:
    restored = load()  # the index, not a stale listing, decides
    assert (restored.by_listing, restored.decoded) == (False, 1)
    assert np.array_equal(restored.images, first.images)


def test_train_val_test_folders_are_detected_and_honoured(tmp_path):
    root = tmp_path / "images"
    for part, n in (("train", 6), ("val", 2), ("test", 3)):
        make_image_folder(root / part, classes=("red", "blue"), per_class=n)
    data = load_image_folder(str(root), image_size=16)
    assert data.layout == "train/val/test folders"
    assert data.subset_counts() == {"train": 12, "val": 4, "test": 6}
    parts = split(data, 0.2, seed=0)
    assert len(parts.y_train) == 12 and len(parts.y_val) == 4  # test never trains
    assert np.bincount(parts.y_val).tolist() == [2, 2]
    assert set(np.unique(data.subset)) == {TRAIN, VAL, TEST}


def test_csv_of_path_and_label(tmp_path):
    folder = make_image_folder(tmp_path / "pics", classes=("red", "blue"), per_class=4)
    rows = ["path,label"] + [
        f"pics/{p.parent.name}/{p.name},{'warm' if p.parent.name == 'red' else 'cold'}"
        for p in sorted(folder.rglob("*.*"))
    ]
    rows.append("pics/missing.jpg,warm")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_image_folder(str(tmp_path / "labels.csv"), image_size=16)
    assert data.layout == "csv"
    assert data.class_names == ["cold", "warm"]
    assert np.bincount(data.labels).tolist() == [4, 4]
    assert [s["reason"] for s in data.skipped] == ["unreadable: No such file or directory"]


def test_inspect_reports_classes_bad_files_and_duplicates(tmp_path):
    folder = messy_folder(tmp_path / "images")
    test_folder = tmp_path / "test"
    (test_folder / "blue").mkdir(parents=True)
    (test_folder / "blue" / "leak.jpg").write_bytes((folder / "blue" / "000.jpg").read_bytes())
    out = run_automl("inspect", folder, "--test", test_folder, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["classes"] == {
        "blue": {"images": 8 + 1 + 1, "test": 1},
        "red": {"images": 8 + len(GOOD)},
    }
    assert report["imbalance"] == pytest.approx((8 + len(GOOD)) / 10)
    assert {"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"} <= set(report["formats"])
    assert {"RGB", "RGBA", "CMYK", "P"} <= set(report["modes"])
    assert len(report["bad"]) == len(BAD)
    problems = {p for group in report["duplicates"] for p in group["problems"]}
    assert "in 2 classes: blue, red" in problems
    leak = [g for g in report["duplicates"] if any("leak.jpg" in p for p in g["paths"])]
    assert len(leak) == 1 and len(leak[0]["paths"]) == 2
    assert leak[0]["problems"] == ["in train and test"]

    text = run_automl("inspect", folder)
    assert text.returncode == 0, text.stderr
    assert "decompression bomb" in text.stdout
    assert "in 2 classes: blue, red" in text.stdout


def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _unreadable(tmp: Path) -> Path:
    for name in ("a", "b"):
        (tmp / "bad" / name).mkdir(parents=True)
        (tmp / "bad" / name / "x.jpg").write_text("not an image")
    return tmp / "bad"


def _tiny_class(tmp: Path) -> Path:
    make_image_folder(tmp / "tiny", classes=("red",), per_class=6)
    make_image_folder(tmp / "tiny", classes=("blue",), per_class=1)
    return tmp / "tiny"


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        (_empty, "is empty"),
        (_unreadable, "no readable images"),
        (_tiny_class, "class 'blue' has 1 image(s): too few to split"),
    ],
    ids=["empty", "unreadable", "tiny-class"],
)
def test_data_errors_are_one_line(tmp_path, folder, message):
    out = run_automl("search", folder(tmp_path), "--out", tmp_path / "run")
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
