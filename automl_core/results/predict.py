"""Load any exported winner with its own runtime and classify image files with it.

The runtime is chosen by file type: ``.keras`` (Keras, ``safe_mode`` on), a SavedModel
folder (TensorFlow), ``.onnx`` (onnxruntime), ``.tflite`` (ai-edge-litert). The input
size is read from the model's own input signature; a model that takes any size is fed
images decoded at the size it squashes them to (``input.json``), so they pass through
unchanged. The class names come from ``labels.json``; both files lie beside the model
(inside, for a SavedModel folder).

Files are classified as a stream: a batch is decoded, predicted and handed on before the
next is read, so memory does not grow with the number of images.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from automl_core.data.decode import decode_image
from automl_core.errors import UsageError
from automl_core.rundir import INPUT, LABELS, RunDir, WinnerDir
from automl_core.rundir import write_json as save_json

BATCH = 64


@dataclass
class Predictor:
    """A loaded model: raw-pixel float32 batches in, class probabilities out."""

    path: Path
    runtime: str
    input_size: int
    """The square size images are decoded at: the model's input, or the size a model
    that takes any size squashes them to."""
    classes: list[str]
    run: Callable[[np.ndarray], np.ndarray]
    """One batch of shape (n, height, width, 3), float32 0..255 -> (n, classes); height and
    width are ``input_size`` unless the model takes any size."""
    any_size: bool = False

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
    taken to mean its ``model.keras``, a folder ``automl export -o`` wrote its one model."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such model: {str(path)!r}")
    if not path.is_dir() or is_saved_model(path):
        return path
    for candidate in (WinnerDir(path).model, RunDir(path).winner.model):
        if candidate.is_file():
            return candidate
    models = sorted(
        p for p in path.iterdir() if is_saved_model(p) or (p.is_file() and _kind(p) in RUNTIMES)
    )
    if len(models) == 1:
        return models[0]
    if models:
        names = ", ".join(p.name for p in models)
        raise UsageError(f"{str(path)!r} holds several models ({names}): name one of them")
    raise UsageError(
        f"{str(path)!r} holds no model (a run directory without a winner? "
        "give a .keras, .onnx or .tflite file or a SavedModel folder)"
    )


def is_saved_model(path: Path) -> bool:
    """Whether ``path`` is a SavedModel folder."""
    return (path / "saved_model.pb").is_file()


def _kind(path: Path) -> str:
    """The ``RUNTIMES`` key for a model path: its suffix, or ``saved_model``."""
    return "saved_model" if path.is_dir() else path.suffix.lower().lstrip(".")


def load_predictor(path: str | Path) -> Predictor:
    """Load the model at ``path`` with the runtime its file type calls for."""
    path = resolve_model(path)
    kind = _kind(path)
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
        raise UsageError(
            f"{str(path)!r} is not a readable {kind} model: {first_line(error)}"
        ) from error
    size, any_size = _input_size(path, shape)
    return Predictor(path, runtime, size, read_labels(path), run, any_size)


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def write_sidecars(folder: Path, classes: list[str], image_size: int) -> None:
    """Write what ``load_predictor`` reads beside a model into ``folder``: the class names
    in output order and the square size the training images were decoded at."""
    save_json(folder / LABELS, classes)
    save_json(folder / INPUT, {"image_size": image_size})


def read_labels(path: Path) -> list[str]:
    """Class names in output order from the ``labels.json`` sidecar of ``path``."""
    return list(_read_sidecar(path, LABELS, "name the classes"))


def _read_sidecar(path: Path, name: str, purpose: str):
    """The JSON file ``name`` inside a folder model or beside ``path``."""
    places = ([path / name] if path.is_dir() else []) + [path.parent / name]
    for place in places:
        if place.is_file():
            return json.loads(place.read_text())
    raise UsageError(f"no {name} beside {str(path)!r}: cannot {purpose}")


def _input_size(path: Path, shape: Iterable) -> tuple[int, bool]:
    """The side images are decoded at, and whether the model takes any size: a square
    input ``(batch, side, side, 3)``, or ``(batch, any, any, 3)`` with ``input.json``."""
    shape = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(shape) == 4 and shape[1] is None and shape[2] is None:
        return int(_read_sidecar(path, INPUT, "tell its image size")["image_size"]), True
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None:
        raise UsageError(f"{str(path)!r} does not take square RGB images (input {shape})")
    return shape[1], False


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


def predict_files(
    predictor: Predictor,
    files: Iterable[Path],
    top_k: int = 3,
    skip: Callable[[Path, str], None] | None = None,
    batch_size: int = BATCH,
) -> Iterator[dict]:
    """Top-k classes with probabilities for each readable image file, in order, streamed.

    A batch of ``batch_size`` files is decoded exactly as training did, predicted and
    yielded before the next batch is read. ``skip(path, reason)`` is called for a file
    that cannot be decoded; without it such a file is a usage error.
    """
    batch: list[Path] = []
    for path in files:
        batch.append(path)
        if len(batch) == batch_size:
            yield from _predict_batch(predictor, batch, top_k, skip)
            batch = []
    if batch:
        yield from _predict_batch(predictor, batch, top_k, skip)


def _predict_batch(
    predictor: Predictor, files: list[Path], top_k: int, skip: Callable[[Path, str], None] | None
) -> Iterator[dict]:
    """``predict_files`` for one batch: decode, skip the unreadable, predict, yield."""
    readable, images = [], []
    for path in files:
        try:
            images.append(decode_image(path, predictor.input_size))
        except Exception as error:  # Pillow raises OSError, ValueError, bomb errors...
            reason = first_line(error)
            if skip is None:
                raise UsageError(f"cannot decode image {str(path)!r}: {reason}") from error
            skip(path, reason)
            continue
        readable.append(path)
    if not readable:
        return
    probabilities = predictor.run(np.stack(images).astype(np.float32))
    if probabilities.shape[1] != len(predictor.classes):
        raise UsageError(
            f"{str(predictor.path)!r} outputs {probabilities.shape[1]} classes but its "
            f"{LABELS} names {len(predictor.classes)}"
        )
    for path, probs in zip(readable, probabilities, strict=True):
        order = np.argsort(-probs, kind="stable")[:top_k]
        yield {
            "image": str(path),
            "top": [{"class": predictor.classes[i], "probability": float(probs[i])} for i in order],
        }


def classify(predictor: Predictor, files: list[Path], top_k: int = 3) -> list[dict]:
    """Top-k classes with probabilities for each image file; an unreadable one is a
    usage error."""
    return list(predict_files(predictor, files, top_k))


def write_text(results: Iterable[dict], stream: TextIO) -> int:
    """One line per image: ``path: class probability, ...``; returns how many."""
    count = 0
    for result in results:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
        stream.write(f"{result['image']}: {top}\n")
        count += 1
    return count


def write_json(results: Iterable[dict], stream: TextIO) -> int:
    """A JSON array, one image's object per line, written as the results come."""
    count = 0
    for count, result in enumerate(results, 1):
        stream.write(("[\n" if count == 1 else ",\n") + json.dumps(result))
    stream.write("\n]\n" if count else "[]\n")
    return count


def write_csv(results: Iterable[dict], stream: TextIO, top_k: int) -> int:
    """CSV, a row per image: ``path,label,probability``, then ``label_2,probability_2``
    and so on up to ``top_k``; written as the results come. Returns how many rows."""
    writer = csv.writer(stream)
    header = ["path", "label", "probability"]
    for rank in range(2, top_k + 1):
        header += [f"label_{rank}", f"probability_{rank}"]
    writer.writerow(header)
    count = 0
    for result in results:
        cells = [result["image"]]
        for top in result["top"]:
            cells += [top["class"], f"{top['probability']:.6f}"]
        writer.writerow(cells)
        count += 1
    return count
