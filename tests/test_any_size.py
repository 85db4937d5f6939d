"""Every export takes an image of any size and resizes it inside the model the way the
decoder does; the LiteRT one takes exactly the decoded size and says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, run_automl
from PIL import Image

from automl_core.data.decode import decode_image

SIDE = 16
"""The decoded size of the shared exported run's images."""
ATOL = 2e-3
"""How far a model fed raw pixels may be from ``automl predict`` (measured: 1e-4)."""


@pytest.fixture(scope="module")
def run_dir(exported_run):
    """A tiny finished search that exported every float format (``--export``)."""
    return exported_run


def noisy(shape: tuple[int, int], colour: str, seed: int) -> np.ndarray:
    """A photo-sized image of one class's tint with noise, as uint8 RGB."""
    noise = np.random.default_rng(seed).integers(-40, 40, (*shape, 3))
    return np.clip(np.array(COLOURS[colour]) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "side"),
    [(200, 300, 16), (300, 200, 16), (37, 1000, 72), (9, 7, 16), (480, 640, 224)],
)
def test_squash_in_the_graph_matches_the_decoder(tmp_path, height, width, side):
    """Shrinking by any factor (with and without Pillow's box reduction) and enlarging:
    within rounding of the decoder's pixels."""
    import keras

    from automl_core.training.input_size import squash

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, squash(inputs, side))
    resized = model.predict(pixels[None].astype("float32"), verbose=0)[0]
    difference = np.abs(np.rint(resized) - decode_image(tmp_path / "image.png", side))
    assert difference.max() <= 1 and difference.mean() < 0.3  # Pillow rounds after each pass
    same = np.random.default_rng(1).uniform(0, 255, (1, side, side, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(same, verbose=0), same, atol=1e-4)  # unchanged


@pytest.fixture(scope="module")
def photos(run_dir, tmp_path_factory):
    """A 300x200 and a 200x300 PNG of the red class, with ``automl predict``'s
    probabilities (every class) for each, from the real CLI on the run directory."""
    folder = tmp_path_factory.mktemp("photos")
    files = []
    for seed, shape in enumerate([(200, 300), (300, 200)]):
        files.append(folder / f"{shape[1]}x{shape[0]}.png")
        Image.fromarray(noisy(shape, "red", seed)).save(files[-1])
    out = run_automl("predict", run_dir, *files, "--json", "--top-k", "3")
    assert out.returncode == 0, out.stderr
    classes = json.loads((run_dir / "winner" / "labels.json").read_text())
    expected = {}
    for result in json.loads(out.stdout):
        top = {t["class"]: t["probability"] for t in result["top"]}
        expected[result["image"]] = np.array([top[name] for name in classes])
    return {file: expected[str(file)] for file in files}


def raw(file) -> np.ndarray:
    """The file's own pixels, at its own size, as a batch of one."""
    return np.asarray(Image.open(file).convert("RGB"), dtype="float32")[None]


def assert_same_answer(probabilities: np.ndarray, expected: np.ndarray) -> None:
    """Close probabilities, and the same top-1 where no difference that close could
    change it (a tiny model's top-1 can be a near tie)."""
    np.testing.assert_allclose(probabilities, expected, atol=ATOL)
    first, second = np.sort(expected)[::-1][:2]
    assert first - second > 2 * ATOL
    assert probabilities.argmax() == expected.argmax()


def test_keras_takes_any_size_in_plain_keras(run_dir, photos):
    import keras

    model = keras.models.load_model(run_dir / "winner" / "model.keras")
    assert model.input_shape == (None, None, None, 3)
    for file, expected in photos.items():
        assert raw(file).shape[1:3] != (SIDE, SIDE)
        assert_same_answer(model.predict(raw(file), verbose=0)[0], expected)


def test_saved_model_takes_any_size(run_dir, photos):
    import tensorflow as tf

    serve = tf.saved_model.load(str(run_dir / "winner" / "saved_model")).signatures[
        "serving_default"
    ]
    ((name, spec),) = serve.structured_input_signature[1].items()
    assert spec.shape.as_list() == [None, None, None, 3]
    for file, expected in photos.items():
        (probabilities,) = serve(**{name: tf.constant(raw(file))}).values()
        assert_same_answer(probabilities.numpy()[0], expected)


def test_onnx_takes_any_size(run_dir, photos):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(run_dir / "winner" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (source,) = session.get_inputs()
    assert source.name == "images"
    assert [isinstance(d, int) for d in source.shape] == [False, False, False, True]
    for file, expected in photos.items():
        assert_same_answer(session.run(None, {"images": raw(file)})[0][0], expected)


def test_tflite_takes_the_decoded_size_and_the_card_says_so(run_dir, photos):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(run_dir / "winner" / "model.tflite"))
    source = interpreter.get_input_details()[0]
    assert list(source["shape_signature"][1:]) == [SIDE, SIDE, 3]
    interpreter.allocate_tensors()
    for file, expected in photos.items():
        interpreter.set_tensor(source["index"], decode_image(file, SIDE)[None].astype("float32"))
        interpreter.invoke()
        probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert_same_answer(probabilities[0], expected)
    card = json.loads((run_dir / "winner" / "model_card.json").read_text())
    assert card["input"]["resize"].startswith("inside the model, from any size")
    assert not card["exports"]["tflite"]["any_size"]
    assert all(card["exports"][name]["any_size"] for name in ("saved_model", "onnx"))
    markdown = (run_dir / "winner" / "model_card.md").read_text()
    assert "- Input: RGB images of any size" in markdown
    assert f"- model.tflite: exactly {SIDE}x{SIDE}; squash images" in markdown


def readme_snippet() -> str:
    """The README's "use the winner" Python block, exactly as written."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (snippet,) = [block for block in blocks if "keras.models.load_model" in block]
    return snippet


def test_the_readmes_snippet_runs_as_written_without_automl(run_dir, tmp_path):
    """In a folder with ``runs/latest`` and a 300x200 ``photo.jpg``, a Python that cannot
    import automl runs the README's block and prints ``automl predict``'s top-1."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(run_dir)
    Image.fromarray(noisy((200, 300), "red", 7)).save(tmp_path / "photo.jpg", quality=95)
    blocked = "import sys; sys.modules['automl_core'] = sys.modules['automl_plugins'] = None\n"
    out = subprocess.run(
        [sys.executable, "-c", blocked + readme_snippet()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    predicted = run_automl("predict", run_dir, tmp_path / "photo.jpg", "--json")
    assert predicted.returncode == 0, predicted.stderr
    (top,) = json.loads(predicted.stdout)
    name, probability = out.stdout.split()
    assert name == top["top"][0]["class"]
    assert abs(float(probability.rstrip("%")) / 100 - top["top"][0]["probability"]) < ATOL
