"""Winner export formats. ``keras`` is always written: ``winner/model.keras``.

Each exporter writes one artifact into the folder it is handed and returns its path.
An exporter's tags name the ``--quantize`` modes it supports; ``metadata["quantize"]``
is the mode asked for (or ``None``) and ``metadata["representative_images"]`` holds
training images (raw pixels, float32) to calibrate ``int8`` on.

The winner takes images of any height and width and squashes them itself
(``automl_core.training.input_size.with_any_input_size``); every format keeps that but
LiteRT, which takes exactly the decoded size (``input.json`` beside it): a phone
runtime's fixed input, and the size ``int8`` is calibrated at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from automl_core import hookimpl
from automl_core.rundir import atomic_target
from automl_core.training.input_size import at_decoded_size

QUANTIZE_MODES = ("float16", "int8", "dynamic")


@hookimpl
def register_exporters(register):
    register("keras", export_keras, description="native Keras .keras file")
    register(
        "saved_model",
        export_saved_model,
        description="TensorFlow SavedModel folder (TF Serving signature serving_default)",
    )
    register(
        "onnx",
        export_onnx,
        description="ONNX .onnx file (needs automl-images[onnx])",
        needs=("tf2onnx", "onnx", "onnxruntime"),  # onnxruntime verifies the export
        install="automl-images[onnx]",
    )
    register(
        "tflite",
        export_tflite,
        description="LiteRT / TFLite .tflite file, fixed input size; float32, "
        "or --quantize float16|int8|dynamic",
        tags=QUANTIZE_MODES,
        needs=("ai_edge_litert",),  # verifies the export
        install="automl-images[litert]",
    )


def export_keras(model, path: Path, metadata: dict) -> Path:
    target = Path(path) / "model.keras"
    with atomic_target(target) as tmp:
        model.save(tmp)
    return target


def export_saved_model(model, path: Path, metadata: dict) -> Path:
    """A SavedModel whose ``serve`` / ``serving_default`` takes raw pixels."""
    target = Path(path) / "saved_model"
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def export_onnx(model, path: Path, metadata: dict) -> Path:
    """An ONNX graph with one float32 input ``images`` of any batch size (and any height
    and width, when the model takes them)."""
    import tensorflow as tf

    # Explicit: a model loaded from disk and never called has no signature to infer.
    signature = [tf.TensorSpec(model.input_shape, tf.float32, name="images")]
    target = Path(path) / "model.onnx"
    with atomic_target(target) as tmp:
        model.export(str(tmp), format="onnx", verbose=False, input_signature=signature)
    return target


def export_tflite(model, path: Path, metadata: dict) -> Path:
    """A LiteRT flatbuffer taking the decoded size; inputs and outputs stay float32 in
    every quantize mode."""
    import tensorflow as tf

    model = at_decoded_size(model)
    mode = metadata.get("quantize")
    options = {}
    if mode:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif mode == "int8":
        images = metadata["representative_images"]
        options["representative_dataset"] = lambda: ([image[None]] for image in images)
    target = Path(path) / (f"model_{mode}.tflite" if mode else "model.tflite")
    with atomic_target(target) as tmp:
        model.export(str(tmp), format="litert", verbose=False, **options)
    return target
