"""Class imbalance: balanced class weights, and when ``--class-weights auto`` turns them on.

A balanced weight is ``n / (k * n_c)`` for a class of ``n_c`` of the ``n`` training
images and ``k`` classes, so every class weighs as much in the loss as the others. The
search decides once, from its training split, and records the weights in
``dataset.json`` and every trial's spec; a trial multiplies each image's loss by the
weight of its label (for labels mixed by MixUp or CutMix, by the mix of their weights).
"""

from __future__ import annotations

import numpy as np

CLASS_WEIGHTS = ("auto", "balanced", "none")
"""The ``class_weights`` setting's choices."""
IMBALANCE_RATIO = 3.0
"""``auto`` weighs classes when the largest has more than this many times the training
images of the smallest."""


def class_weights(mode: str, labels: np.ndarray, class_names: list[str]) -> dict[str, float] | None:
    """Each class's weight by name, or None when the images stay unweighted."""
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    if mode == "none" or (mode == "auto" and imbalance(counts) <= IMBALANCE_RATIO):
        return None
    weights = len(labels) / (len(class_names) * np.maximum(counts, 1))
    return {name: round(float(w), 6) for name, w in zip(class_names, weights, strict=True)}


def imbalance(counts: np.ndarray) -> float:
    """The largest class's image count over the smallest's (an empty class counts one)."""
    return float(np.max(counts) / max(1, np.min(counts)))


def weights_note(mode: str, labels: np.ndarray, class_names: list[str]) -> str | None:
    """One line for the console when the classes are weighted, saying how unequal they
    are; None when they are not weighted."""
    if class_weights(mode, labels, class_names) is None:
        return None
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    large, small = int(np.argmax(counts)), int(np.argmin(counts))
    return (
        f"balanced class weights on: {class_names[large]} has {counts[large]} training "
        f"images, {class_names[small]} {counts[small]} ({imbalance(counts):.1f}x); "
        "--class-weights none turns them off"
    )


def label_weights(class_weights: dict[str, float], class_names: list[str]):
    """A function of a batch of one-hot (or mixed) labels -> each image's weight."""
    import tensorflow as tf

    weights = tf.constant([class_weights[name] for name in class_names], tf.float32)
    return lambda labels: tf.linalg.matvec(tf.cast(labels, tf.float32), weights)
