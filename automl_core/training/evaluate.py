"""Scoring a trained model on labelled images: accuracy, per class, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(labels)))


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    picked = probabilities[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def classification_report(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict:
    """Accuracy, per-class accuracy (recall) and the confusion matrix, JSON-ready."""
    predicted = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    per_class = {
        name: (float(matrix[i, i] / row) if (row := matrix[i].sum()) else None)
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": accuracy(probabilities, labels) if len(labels) else None,
        "images": len(labels),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
        "classes": list(class_names),
    }


def evaluate(
    model, images: np.ndarray, labels: np.ndarray, class_names: list[str], batch_size: int = 64
) -> dict:
    """Run ``model`` on raw-pixel ``images`` and score it against ``labels``."""
    probabilities = model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    return classification_report(probabilities, labels, class_names)
