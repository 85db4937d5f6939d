"""Load any exported winner with its own runtime and classify image files with it.

The runtime is chosen by file type: ``.keras`` (Keras, ``safe_mode`` on), a SavedModel
folder (TensorFlow), ``.onnx`` (onnxruntime), ``.tflite`` (ai-edge-litert). Every
artifact describes itself: the input size is read from the model's own input signature
and the class names from ``labels.json`` beside it (inside, for a SavedModel folder).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl_core.data.decode import decode_image
from automl_core.errors import UsageError
from automl_core.rundir import LABELS, RunDir, WinnerDir

BATCH = 64


@dataclass
class Predictor:
    """A loaded model: raw-pixel float32 batches in, class probabilities out."""

    path: Path
    runtime: str
    input_size: int
    classes: list[str]
    run: Callable[[np.ndarray], np.ndarray]
    """One batch of shape (n, size, size, 3), float32 0..255 -> (n, classes)."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for any number of images, run in batches."""
        images = np.asarray(images, dtype=np.float32)
        return np.concatenate(
            [self.run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
        )

    def latency_ms(self, image: np.ndarray, repeats: int = 20) -> float:
        """Median CPU time to classify one image, after a few warm-up runs."""
        batch = np.asarray(image, dtype=np.float32)[None]
        for _ in range(3):
            self.run(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.run(batch)
            times.append(time.perf_counter() - start)
        return round(float(np.median(times)) * 1000, 3)


def resolve_model(path: str | Path) -> Path:
    """The model file or SavedModel folder ``path`` names; a run or winner folder is
    taken to mean its ``model.keras``."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such model: {str(path)!r}")
    if not path.is_dir() or (path / "saved_model.pb").is_file():
        return path
    for candidate in (WinnerDir(path).model, RunDir(path).winner.model):
        if candidate.is_file():
            return candidate
    raise UsageError(
        f"{str(path)!r} holds no model (a run directory without a winner? "
        "give a .keras, .onnx or .tflite file or a SavedModel folder)"
    )


def load_predictor(path: str | Path) -> Predictor:
    """Load the model at ``path`` with the runtime its file type calls for."""
    path = resolve_model(path)
    kind = "saved_model" if path.is_dir() else path.suffix.lower().lstrip(".")
    loader = RUNTIMES.get(kind)
    if loader is None:
        raise UsageError(
            f"unknown model format {path.suffix or path.name!r} for {str(path)!r} "
            "(use .keras, .onnx, .tflite or a SavedModel folder)"
        )
    try:
        runtime, shape, run = loader(path)
    except ImportError as error:
        raise UsageError(
            f"cannot load {str(path)!r}: {error.name or error} is not installed "
            "(pip install 'automl[onnx,litert]')"
        ) from error
    except Exception as error:  # each runtime raises its own types for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"{str(path)!r} is not a readable {kind} model: {reason}") from error
    return Predictor(path, runtime, _square_size(path, shape), read_labels(path), run)


def read_labels(path: Path) -> list[str]:
    """Class names in output order from the ``labels.json`` sidecar of ``path``."""
    places = ([path / LABELS] if path.is_dir() else []) + [path.parent / LABELS]
    for place in places:
        if place.is_file():
            return list(json.loads(place.read_text()))
    raise UsageError(f"no {LABELS} beside {str(path)!r}: cannot name the classes")


def _square_size(path: Path, shape: Iterable) -> int:
    """The side of the square input ``(batch, side, side, 3)`` the model declares."""
    shape = list(shape)
    if len(shape) != 4 or shape[1] != shape[2] or not isinstance(shape[1], int) or shape[1] < 1:
        raise UsageError(f"{str(path)!r} does not take square RGB images (input {shape})")
    return shape[1]


def _load_keras(path: Path):
    from keras.models import load_model

    model = load_model(path, compile=False)
    return "keras", model.input_shape, lambda x: np.asarray(model.predict_on_batch(x))


def _load_saved_model(path: Path):
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name, spec), *_ = serve.structured_input_signature[1].items()

    def run(x: np.ndarray) -> np.ndarray:
        outputs = serve(**{name: tf.constant(x)})
        return next(iter(outputs.values())).numpy()

    return "tensorflow", spec.shape.as_list(), run


def _load_onnx(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    return "onnxruntime", source.shape, lambda x: session.run(None, {source.name: x})[0]


def _load_tflite(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()

    return "ai-edge-litert", [int(d) for d in source["shape_signature"]], run


RUNTIMES = {
    "keras": _load_keras,
    "saved_model": _load_saved_model,
    "onnx": _load_onnx,
    "tflite": _load_tflite,
}


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, with every image file (by Pillow's known suffixes) in the
    folders named, sorted."""
    from PIL import Image

    suffixes = set(Image.registered_extensions())
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"no such image: {str(path)!r}")
    if not found:
        raise UsageError("no images to classify")
    return found


def load_images(files: list[Path], size: int) -> np.ndarray:
    """Decode ``files`` exactly as training did; an unreadable one is a usage error."""
    images = []
    for path in files:
        try:
            images.append(decode_image(path, size))
        except Exception as error:  # Pillow raises OSError, ValueError, bomb errors...
            raise UsageError(f"cannot decode image {str(path)!r}: {error}") from error
    return np.stack(images).astype(np.float32)


def classify(predictor: Predictor, files: list[Path], top_k: int = 3) -> list[dict]:
    """Top-k classes with probabilities for each image file."""
    probabilities = predictor.predict(load_images(files, predictor.input_size))
    if probabilities.shape[1] != len(predictor.classes):
        raise UsageError(
            f"{str(predictor.path)!r} outputs {probabilities.shape[1]} classes but its "
            f"{LABELS} names {len(predictor.classes)}"
        )
    k = min(top_k, len(predictor.classes))
    results = []
    for path, probs in zip(files, probabilities, strict=True):
        order = np.argsort(-probs, kind="stable")[:k]
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": predictor.classes[i], "probability": float(probs[i])} for i in order
                ],
            }
        )
    return results
