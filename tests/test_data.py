"""Image decoding, the stratified split and the decode-once cache."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image, UnidentifiedImageError

from automl_core.data.dataset import ImageData, default_val_split, split
from automl_core.data.decode import _decode_plain_jpeg, _decode_with_pillow, decode_image
from automl_core.errors import UsageError
from automl_plugins.image_folder import load_image_folder, typical_size


def test_decode_handles_modes_and_resizes(tmp_path):
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "clear.png")
    Image.new("L", (10, 10), 77).save(tmp_path / "grey.png")
    clear = decode_image(tmp_path / "clear.png", 16)
    grey = decode_image(tmp_path / "grey.png", 16)
    assert clear.shape == grey.shape == (16, 16, 3)
    assert clear.dtype == np.uint8
    assert (clear == 255).all()  # composited onto white
    assert (grey == 77).all()


def _jpegs(folder) -> dict[str, bool]:
    """A few JPEGs (name -> whether libjpeg-turbo's fast path may take it), all named .jpg."""
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 255, (12, 18, 3), np.uint8)).resize((300, 200))
    photo.save(folder / "colour.jpg", quality=90)  # 4:2:0, drafted at 1/4 then resized
    photo.convert("L").save(folder / "grey.jpg")
    photo.resize((53, 37)).save(folder / "progressive.jpg", progressive=True, subsampling=0)
    upright = Image.Exif()
    upright[0x0112] = 1
    photo.save(folder / "upright.jpg", exif=upright)
    turned = Image.Exif()
    turned[0x0112] = 6
    photo.save(folder / "turned.jpg", exif=turned)  # must be rotated as Pillow does
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    photo.save(folder / "png_named.jpg", format="PNG")  # identified by content
    fast = ("colour", "grey", "progressive", "upright")
    return {f"{name}.jpg": name in fast for name in (*fast, "turned", "cmyk", "png_named")}


@pytest.mark.parametrize("size", [16, 64, 300])
def test_fast_jpeg_path_gives_pillows_pixels(tmp_path, size):
    for name, fast in _jpegs(tmp_path).items():
        data = (tmp_path / name).read_bytes()
        assert (_decode_plain_jpeg(data, size) is not None) == fast, name
        ours = decode_image(tmp_path / name, size).astype(int)
        pillow = _decode_with_pillow(io.BytesIO(data), size).astype(int)
        assert ours.shape == (size, size, 3), name
        assert np.abs(ours - pillow).max() <= 2, name  # JPEG decoder tolerance
    turned, upright = (decode_image(tmp_path / n, size) for n in ("turned.jpg", "upright.jpg"))
    assert np.array_equal(turned, np.rot90(upright, k=-1))  # orientation 6: 90 deg clockwise


def test_a_large_non_image_is_turned_down_from_its_header(tmp_path):
    video = tmp_path / "holiday.jpg"
    with open(video, "wb") as handle:
        handle.write(b"\x00\x00\x00\x18ftypmp42 not a picture")
        handle.truncate(64 * 2**20)  # sparse: 64 MiB on paper, nothing on disk
    with pytest.raises(UnidentifiedImageError):
        decode_image(video, 16)  # once first: Pillow imports its format plugins
    tracemalloc.start()
    try:
        with pytest.raises(UnidentifiedImageError):
            decode_image(video, 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the header was read, not the 64 MiB


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(3, dtype=np.int32), [10, 20, 30])
    data = ImageData(
        np.arange(60, dtype=np.uint8).reshape(60, 1, 1, 1).repeat(3, -1),
        labels,
        ["a", "b", "c"],
        "test",
    )
    first = split(data, 0.2, seed=1)
    assert np.bincount(first.y_val).tolist() == [2, 4, 6]
    assert np.bincount(first.y_train).tolist() == [8, 16, 24]
    assert not set(first.x_val[:, 0, 0, 0]) & set(first.x_train[:, 0, 0, 0])
    again = split(data, 0.2, seed=1)
    assert np.array_equal(first.x_val, again.x_val)
    other = split(data, 0.2, seed=2)
    assert not np.array_equal(first.x_val, other.x_val)


def test_default_validation_share_is_a_fifth_holding_out_at_most_5000_images():
    assert default_val_split(1000) == 0.2
    assert default_val_split(40_000) == pytest.approx(0.125)
    labels = np.repeat(np.arange(2, dtype=np.int32), 15_000)
    data = ImageData(np.zeros((30_000, 1, 1, 1), np.uint8), labels, ["a", "b"], "test")
    held_out = split(data, None, seed=0)
    assert np.bincount(held_out.y_val).tolist() == [2500, 2500]
    assert len(split(data, 0.2, seed=0).y_val) == 6000  # an explicit share is kept


def test_class_too_small_to_split_is_a_usage_error():
    data = ImageData(
        np.zeros((3, 1, 1, 3), np.uint8), np.array([0, 0, 1], np.int32), ["a", "b"], "test"
    )
    with pytest.raises(UsageError, match="class 'b' has 1 image"):
        split(data, 0.2, seed=0)


def test_typical_size_is_the_median_short_side_capped(tmp_path):
    make_image_folder(tmp_path / "small", size=24)
    files = sorted((tmp_path / "small").rglob("*.*"))
    assert typical_size(files) == 24
    Image.new("RGB", (1000, 800)).save(tmp_path / "big.jpg")
    assert typical_size([tmp_path / "big.jpg"]) == 128


def test_folder_is_decoded_once_and_then_read_from_cache(tmp_path):
    folder = make_image_folder(tmp_path / "images", per_class=4)
    (folder / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    first = load_image_folder(str(folder))
    assert first.images.shape == (12, 16, 16, 3)
    assert [s["path"].endswith("broken.jpg") for s in first.skipped] == [True]
    assert first.cache_stats == {"decoded": 13, "reused": 0}

    second = load_image_folder(str(folder))
    assert second.cache_stats == {"decoded": 0, "reused": 13}  # read back, not decoded
    assert np.array_equal(first.images, second.images)

    other = load_image_folder(str(folder), image_size=8)  # another size, another store
    assert other.cache_stats == {"decoded": 13, "reused": 0}
    assert other.images.shape == (12, 8, 8, 3)


def test_classification_report_counts_per_class():
    from automl_core.training.evaluate import classification_report

    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    report = classification_report(probabilities, np.array([0, 1, 1, 1]), ["a", "b"])
    assert report["accuracy"] == 0.75
    assert report["per_class_accuracy"] == {"a": 1.0, "b": 2 / 3}
    assert report["confusion_matrix"] == [[1, 0], [1, 2]]
