"""Scoring a trained model on labelled images: accuracy, per class, confusion matrix.

The class-balanced scores (balanced accuracy, macro-F1, recall per class) are computed
here once from the predictions, with numpy; ``balanced_accuracy_metric`` keeps the same
balanced accuracy as a Keras metric, so it is logged at every epoch's validation pass.
"""

from __future__ import annotations

import numpy as np

BALANCED_ACCURACY = "balanced_accuracy"
"""The objective, ``TrialResult`` field and Keras metric name (``val_balanced_accuracy``
in an epoch's logs)."""


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


def recalls(matrix: np.ndarray) -> np.ndarray:
    """Each class's share of its images predicted right; NaN for a class with none."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(matrix) / matrix.sum(axis=1)


def balanced_accuracy(matrix: np.ndarray) -> float | None:
    """The mean recall of the classes that have images (None when none has)."""
    present = recalls(matrix)[matrix.sum(axis=1) > 0]
    return float(present.mean()) if len(present) else None


def macro_f1(matrix: np.ndarray) -> float | None:
    """The mean F1 of the classes that are true or predicted at least once (a class
    predicted but never true scores 0)."""
    hits = np.diag(matrix)
    counted = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2 TP + FP + FN
    seen = counted > 0
    return float(np.mean(2 * hits[seen] / counted[seen])) if seen.any() else None


def class_scores(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """``balanced_accuracy``, ``macro_f1`` and ``per_class_recall`` (class name ->
    recall, None for a class without images), JSON-ready."""
    predicted = np.argmax(probabilities, axis=1)
    return _scores(confusion_matrix(labels, predicted, len(class_names)), class_names)


def classification_report(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class accuracy (recall) and the
    confusion matrix, JSON-ready."""
    predicted = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    scores = _scores(matrix, class_names)
    return {
        "accuracy": accuracy(probabilities, labels) if len(labels) else None,
        "images": len(labels),
        BALANCED_ACCURACY: scores[BALANCED_ACCURACY],
        "macro_f1": scores["macro_f1"],
        "per_class_accuracy": scores["per_class_recall"],
        "confusion_matrix": matrix.tolist(),
        "classes": list(class_names),
    }


def _scores(matrix: np.ndarray, class_names: list[str]) -> dict:
    return {
        BALANCED_ACCURACY: balanced_accuracy(matrix),
        "macro_f1": macro_f1(matrix),
        "per_class_recall": {
            name: None if np.isnan(value) else float(value)
            for name, value in zip(class_names, recalls(matrix), strict=True)
        },
    }


def evaluate(
    model, images: np.ndarray, labels: np.ndarray, class_names: list[str], batch_size: int = 64
) -> dict:
    """Run ``model`` on raw-pixel ``images`` and score it against ``labels``."""
    probabilities = model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    return classification_report(probabilities, labels, class_names)


def balanced_accuracy_metric(num_classes: int):
    """A Keras metric of the balanced accuracy over the batches it saw (one-hot or mixed
    labels, their largest share taken as the class): added to every trial's compiled
    metrics, so each epoch's validation pass logs ``val_balanced_accuracy``."""
    import keras
    from keras import ops

    class BalancedAccuracy(keras.metrics.Metric):
        def __init__(self, name: str = BALANCED_ACCURACY, **kwargs):
            super().__init__(name=name, **kwargs)
            self.images = self.add_variable((num_classes,), "zeros", name="images")
            self.hits = self.add_variable((num_classes,), "zeros", name="hits")

        def update_state(self, y_true, y_pred, sample_weight=None):
            true = ops.argmax(y_true, axis=-1)
            members = ops.one_hot(true, num_classes, dtype=self.dtype)  # unweighted
            right = ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), true), self.dtype)
            self.images.assign_add(ops.sum(members, axis=0))
            self.hits.assign_add(ops.sum(members * ops.expand_dims(right, -1), axis=0))

        def result(self):
            present = ops.cast(self.images > 0, self.dtype)
            recall = ops.divide_no_nan(self.hits, self.images)
            return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))

        def reset_state(self):
            self.images.assign(ops.zeros_like(self.images))
            self.hits.assign(ops.zeros_like(self.hits))

    return BalancedAccuracy()
