"""``automl predict``: every artifact gives the Keras model's labels on image files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_automl

from automl_core.cli.main import main
from automl_core.data.decode import decode_image
from automl_core.results.predict import image_files, load_predictor, predict_files

ARTIFACTS = ["model.keras", "saved_model", "model.onnx", "model.tflite", "."]


@pytest.fixture(scope="module")
def run_dir(exported_run):
    """A tiny finished search that exported every float format (``--export``)."""
    return exported_run


@pytest.fixture(scope="module")
def photos(run_dir):
    """Every image of the search's folder, and the Keras model's top-1 for each."""
    import keras

    files = sorted((run_dir.parent / "images").rglob("*.*"))
    model = keras.models.load_model(run_dir / "winner" / "model.keras")
    pixels = np.stack([decode_image(f, 16) for f in files]).astype("float32")
    classes = json.loads((run_dir / "winner" / "labels.json").read_text())
    top1 = [classes[i] for i in model.predict(pixels, verbose=0).argmax(axis=1)]
    return dict(zip(map(str, files), top1, strict=True))


def predict_json(capsys, *args) -> list[dict]:
    assert main(["predict", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_every_format_gives_the_keras_top1(run_dir, photos, capsys, artifact):
    model = run_dir / "winner" / artifact if artifact != "." else run_dir
    results = predict_json(capsys, model, run_dir.parent / "images", "--top-k", "2")
    assert {r["image"]: r["top"][0]["class"] for r in results} == photos
    for result in results:
        assert len(result["top"]) == 2
        first, second = (t["probability"] for t in result["top"])
        assert 1 >= first >= second >= 0


def test_text_output_from_the_real_cli(run_dir, photos):
    image = next(iter(photos))
    out = run_automl("predict", run_dir / "winner" / "model.onnx", image, "--top-k", "5")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert line.startswith(f"{image}: {photos[image]} ")
    assert line.count(",") == 2  # top-5 of 3 classes shows all 3


def automl_lines(stderr: str) -> list[str]:
    """automl's own lines on stderr (TensorFlow's start-up lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith("automl:")]


def test_csv_from_the_real_cli_skips_an_unreadable_file_in_the_middle(run_dir, photos, tmp_path):
    images = shutil.copytree(run_dir.parent / "images", tmp_path / "images")
    broken = images / "green" / "005_broken.png"  # in the middle of the folder
    broken.write_bytes(b"\x89PNG not really a png")
    out = run_automl("predict", run_dir, images, "--csv", tmp_path / "out.csv", "--top-k", "2")
    assert out.returncode == 0, out.stderr
    (warning,) = automl_lines(out.stderr)
    assert warning.startswith(f"automl: warning: cannot decode image {str(broken)!r}")
    assert warning.endswith("; skipped")
    assert (
        out.stdout.strip()
        == f"{len(photos)} of {len(photos) + 1} images classified into {tmp_path / 'out.csv'}"
    )
    with open(tmp_path / "out.csv", newline="") as handle:
        header, *rows = csv.reader(handle)
    assert header == ["path", "label", "probability", "label_2", "probability_2"]
    expected = {
        str(images / Path(path).relative_to(run_dir.parent / "images")): top1
        for path, top1 in photos.items()
    }
    assert {row[0]: row[1] for row in rows} == expected
    assert [row[0] for row in rows] == sorted(expected)  # in order, streamed
    for _, label, first, label_2, second in rows:
        assert label != label_2
        assert 1 >= float(first) >= float(second) >= 0


def test_batches_are_streamed_one_after_another(run_dir, tmp_path):
    images = shutil.copytree(run_dir.parent / "images" / "red", tmp_path / "red")
    files = image_files([images])
    predictor = load_predictor(run_dir / "winner" / "model.onnx")
    skipped = []
    results = predict_files(predictor, files, 1, lambda path, reason: skipped.append(path), 4)
    first = next(results)
    files[-1].write_bytes(b"garbage")  # a later batch: not decoded yet
    rest = list(results)
    assert [first["image"], *(r["image"] for r in rest)] == list(map(str, files[:-1]))
    assert skipped == [files[-1]]


def test_nothing_readable_is_exit_2_with_every_file_listed(run_dir, tmp_path, capsys):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"not an image")
    model, table = run_dir / "winner" / "model.onnx", tmp_path / "out.csv"
    assert main(["predict", str(model), str(tmp_path), "--csv", str(table)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("'")[1] for line in lines] == [str(tmp_path / n) for n in ("a.png", "b.jpg")]
    assert table.read_text().splitlines() == [
        "path,label,probability,label_2,probability_2,label_3,probability_3"
    ]


def test_model_card_and_labels_agree_with_the_folder(run_dir):
    card = json.loads((run_dir / "winner" / "model_card.json").read_text())
    folders = sorted(p.name for p in (run_dir.parent / "images").iterdir())
    assert card["classes"] == folders
    assert {"saved_model", "onnx", "tflite"} <= set(card["exports"])  # the export tests add more


def write_lambda_model(path):
    import keras

    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("junk.onnx", "is not a readable onnx model"),
        ("junk.tflite", "is not a readable tflite model"),
        ("junk.keras", "is not a readable keras model"),
        ("notes.txt", "unknown model format '.txt'"),
        ("empty_dir", "holds no model"),
        ("missing.onnx", "no such model"),
        ("lambda.keras", "is not a readable keras model"),
    ],
)
def test_bad_models_are_one_line(tmp_path, capsys, run_dir, model, message):
    path = tmp_path / model
    if model == "empty_dir":
        path.mkdir()
    elif model == "lambda.keras":
        write_lambda_model(path)  # safe_mode refuses the Lambda's code
    elif model != "missing.onnx":
        path.write_bytes(b"this is not a model")
    image = next((run_dir.parent / "images" / "red").iterdir())
    assert main(["predict", str(path), str(image)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("image", "message"),
    [("broken.jpg", "cannot decode image"), ("missing.jpg", "no such image")],
)
def test_bad_images_are_one_line(tmp_path, capsys, run_dir, image, message):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    model = run_dir / "winner" / "model.tflite"
    assert main(["predict", str(model), str(tmp_path / image)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert image in err
    assert len(err.strip().splitlines()) == 1, err


def test_model_without_labels_is_one_line(tmp_path, capsys, run_dir):
    import shutil

    shutil.copy(run_dir / "winner" / "model.tflite", tmp_path)
    image = next((run_dir.parent / "images" / "red").iterdir())
    assert main(["predict", str(tmp_path / "model.tflite"), str(image)]) == 2
    assert "no labels.json beside" in capsys.readouterr().err


def test_any_size_model_without_its_image_size_is_one_line(tmp_path, capsys, run_dir):
    """A model that takes any size is fed images decoded at the size in ``input.json``."""
    for name in ("model.onnx", "labels.json"):
        shutil.copy(run_dir / "winner" / name, tmp_path)
    image = next((run_dir.parent / "images" / "red").iterdir())
    assert main(["predict", str(tmp_path / "model.onnx"), str(image)]) == 2
    err = capsys.readouterr().err
    assert "no input.json beside" in err and "image size" in err
    assert len(err.strip().splitlines()) == 1, err
