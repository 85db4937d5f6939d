"""Exporters and verification: each format round-trips through its own runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_automl

from automl_core.data.decode import decode_image
from automl_core.errors import UsageError
from automl_core.plugin.manager import load_plugins
from automl_core.results.export import export_formats, load_winner
from automl_core.results.predict import load_predictor

FLOAT_FORMATS = {
    "saved_model": ("saved_model", "tensorflow"),
    "onnx": ("model.onnx", "onnxruntime"),
    "tflite": ("model.tflite", "ai-edge-litert"),
}


@pytest.fixture(scope="module")
def run_dir(exported_run):
    """A tiny finished search that exported every float format (``--export``)."""
    return exported_run


@pytest.fixture(scope="module")
def pixels():
    """Raw-pixel images, as a user would hand the model."""
    return np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 3)).astype("float32")


@pytest.fixture
def own_run(run_dir, tmp_path):
    """A copy of the shared run, for exports that rewrite its model card."""
    return shutil.copytree(run_dir, tmp_path / "run")


def card(run_dir) -> dict:
    return json.loads((run_dir / "winner" / "model_card.json").read_text())


def keras_probabilities(run_dir, images):
    import keras

    model = keras.models.load_model(run_dir / "winner" / "model.keras")
    return model.predict(images, verbose=0)


def test_keras_exporter_writes_a_loadable_model(tmp_path):
    import keras

    export = load_plugins()["exporters"].get("keras").obj
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    path = export(model, tmp_path, {"classes": ["a", "b"]})
    assert path == tmp_path / "model.keras"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(
        keras.models.load_model(path).predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-6,
    )


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_float_export_matches_keras_in_its_own_runtime(run_dir, pixels, fmt):
    name, runtime = FLOAT_FORMATS[fmt]
    predictor = load_predictor(run_dir / "winner" / name)
    assert predictor.runtime == runtime
    assert predictor.input_size == 16
    np.testing.assert_allclose(
        predictor.predict(pixels), keras_probabilities(run_dir, pixels), atol=1e-5
    )
    record = card(run_dir)["exports"][fmt]
    assert record["path"] == name
    assert record["runtime"] == runtime
    assert record["images"] == 6  # the search's validation split, rebuilt
    assert record["top1_agreement"] == 1.0
    assert record["max_abs_diff"] < 1e-4
    assert record["size_bytes"] > 1000
    assert record["cpu_latency_ms"] > 0


def test_saved_model_has_a_serving_signature_for_raw_pixels(run_dir, pixels):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(run_dir / "winner" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    ((name, spec),) = serve.structured_input_signature[1].items()
    assert spec.shape.as_list() == [None, None, None, 3]  # any size: tests/test_any_size.py
    (probabilities,) = serve(**{name: tf.constant(pixels)}).values()
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_quantized_tflite_reports_its_accuracy_change(run_dir, pixels, mode):
    records = export_formats(load_winner(run_dir), ["tflite"], mode)
    record = records[f"tflite_{mode}"]
    assert record["path"] == f"model_{mode}.tflite"
    assert record["quantize"] == mode
    assert 0 <= record["top1_agreement"] <= 1
    assert record["accuracy_change"] == pytest.approx(
        record["accuracy"] - card(run_dir)["evaluation"]["validation"]["accuracy"]
    )
    quantized = load_predictor(run_dir / "winner" / f"model_{mode}.tflite").predict(pixels)
    np.testing.assert_allclose(quantized, keras_probabilities(run_dir, pixels), atol=0.05)
    assert card(run_dir)["exports"]["onnx"]["top1_agreement"] == 1.0  # earlier ones kept


def test_int8_export_from_the_cli_into_another_folder(run_dir, tmp_path):
    out = run_automl("export", run_dir, "--format", "tflite", "--quantize", "int8", "-o", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "top-1 agreement" in out.stdout
    artifact = tmp_path / "model_int8.tflite"
    assert json.loads((tmp_path / "labels.json").read_text()) == ["blue", "green", "red"]
    predictor = load_predictor(artifact)
    assert predictor.classes == ["blue", "green", "red"]
    record = card(run_dir)["exports"]["tflite_int8"]
    assert record["path"] == str(artifact.resolve())
    assert record["images"] == 6
    assert "accuracy_change" in record
    assert 0 <= record["top1_agreement"] <= 1
    # int8 is calibrated on training images: it still tells the tinted classes apart.
    assert record["accuracy"] >= 2 / 3


def test_o_names_the_saved_model_and_predict_takes_it_from_the_real_cli(run_dir, own_run, tmp_path):
    target = tmp_path / "out" / "sm"
    out = run_automl("export", own_run, "--format", "saved_model", "-o", target)
    assert out.returncode == 0, out.stderr
    assert (target / "saved_model.pb").is_file()
    assert json.loads((target / "labels.json").read_text()) == ["blue", "green", "red"]
    assert [p.name for p in target.parent.iterdir()] == ["sm"]  # nothing else left beside
    image = run_dir.parent / "images" / "red" / "000.jpg"
    pixels = decode_image(image, 16).astype("float32")[None]
    top1 = ["blue", "green", "red"][keras_probabilities(own_run, pixels).argmax()]
    predicted = run_automl("predict", target, image, "--top-k", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith(f"{image}: {top1} ")


def test_o_names_an_onnx_file_and_predict_finds_it_in_its_folder(own_run, tmp_path, pixels):
    target = tmp_path / "deploy" / "m.onnx"
    records = export_formats(load_winner(own_run), ["onnx"], output=target)
    assert records["onnx"]["path"] == str(target.resolve())
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "input.json",
        "labels.json",
        "m.onnx",
    ]
    assert json.loads((target.parent / "input.json").read_text()) == {"image_size": 16}
    predictor = load_predictor(target.parent)  # the folder holds one model
    assert predictor.path == target
    np.testing.assert_allclose(
        predictor.predict(pixels), keras_probabilities(own_run, pixels), atol=1e-5
    )


def test_o_is_a_folder_for_several_formats_and_keeps_what_it_holds(own_run, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    export_formats(load_winner(own_run), ["saved_model"], output=folder)  # goes inside
    export_formats(load_winner(own_run), ["onnx", "tflite"], output=folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "input.json",
        "labels.json",
        "model.onnx",
        "model.tflite",
        "notes.txt",
        "saved_model",
    ]
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / "saved_model" / "saved_model.pb").is_file()
    with pytest.raises(UsageError, match="holds several models"):
        load_predictor(folder)


def test_model_card_names_the_classes_in_output_order(run_dir):
    winner = run_dir / "winner"
    facts = card(run_dir)
    assert facts["classes"] == ["blue", "green", "red"]
    assert facts["classes"] == json.loads((winner / "labels.json").read_text())
    assert facts["input"]["shape"] == [16, 16, 3]
    assert facts["input"]["value_range"] == [0, 255]
    assert facts["architecture"] == "baseline_cnn"
    assert facts["hyperparameters"]["baseline_cnn/filters"] in (16, 32, 64)
    validation = facts["evaluation"]["validation"]
    assert validation["images"] == 6
    assert list(validation["per_class_accuracy"]) == ["blue", "green", "red"]
    assert facts["training_data"]["counts"] == {"blue": 12, "green": 12, "red": 12}
    assert facts["training_data"]["train"] == 30
    assert facts["model"]["size_bytes"] == (winner / "model.keras").stat().st_size
    markdown = (winner / "model_card.md").read_text()
    assert markdown.index("0. blue") < markdown.index("1. green") < markdown.index("2. red")
    assert "| model.onnx | onnxruntime |" in markdown


BROKEN_EXPORTER = """
from pathlib import Path
import keras
from automl_core import hookimpl

@hookimpl
def register_exporters(register):
    register("reinitialised", export)

def export(model, path, metadata):
    clone = keras.models.clone_model(model)  # same graph, fresh random weights
    target = Path(path) / "wrong.keras"
    clone.save(target)
    return target
"""


def test_float_export_that_disagrees_is_an_error(run_dir, tmp_path):
    plugin = tmp_path / "broken_exporter.py"
    plugin.write_text(BROKEN_EXPORTER)
    out = run_automl("-p", plugin, "export", run_dir, "--format", "reinitialised", "-o", tmp_path)
    assert out.returncode == 2
    (error,) = [line for line in out.stderr.splitlines() if line.startswith("automl:")]
    assert "disagrees with the Keras model" in error
    assert "Traceback" not in out.stderr  # TensorFlow's own start-up log lines aside
    assert not (tmp_path / "wrong.keras").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onxx"], "did you mean 'onnx'"),
        (["--format", "onnx", "--quantize", "int8"], "not supported by onnx"),
        (["--format", "tflite", "--quantize", "int4"], "not supported by tflite"),
    ],
)
def test_bad_export_requests_are_one_line(run_dir, capsys, args, message):
    from automl_core.cli.main import main

    assert main(["export", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_run_dir_without_a_winner_is_one_line(tmp_path, capsys):
    from automl_core.cli.main import main

    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    assert "has no winner" in capsys.readouterr().err


def test_search_refuses_an_unknown_export_format_before_training(image_folder, tmp_path):
    out = run_automl("search", image_folder, "--export", "onnx,pdf", "--out", tmp_path / "run")
    assert out.returncode == 2
    assert "unknown exporter 'pdf'" in out.stderr
    assert not (tmp_path / "run").exists()
