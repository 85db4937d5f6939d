"""Class imbalance: the class-balanced scores, class weights and the balanced_accuracy
objective, from the metric math to a real search, its report, model card and page."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import make_image_folder, quick_search, run_automl

from automl_core.data.dataset import DatasetSplit
from automl_core.plugin.manager import load_plugins
from automl_core.rundir import RunDir, read_json, write_json
from automl_core.training.balance import class_weights, label_weights, weights_note
from automl_core.training.evaluate import (
    balanced_accuracy,
    balanced_accuracy_metric,
    class_scores,
    classification_report,
    confusion_matrix,
    macro_f1,
)
from automl_core.training.space import augmenter_scope, initial_space
from automl_core.training.trial import train_val_pipelines

NAMES = ["a", "b", "c", "d"]
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2])
PREDICTED = np.array([0, 0, 0, 1, 1, 0, 2, 3])
"""Recall a 3/4, b 1/2, c 1/2, d no images; d is predicted once (wrongly)."""
QUICK = ("--max-trials", "2", "--epochs", "2", "--architectures", "baseline_cnn")
QUICK += ("--augmenters", "none", "--executor", "inline", "--no-refit")
FIELDS = ("balanced_accuracy", "macro_f1", "per_class_recall")


def one_hot(labels: np.ndarray, classes: int = 4) -> np.ndarray:
    return np.eye(classes, dtype="float32")[labels]


# --- the math, on fixed arrays ----------------------------------------------------------


def test_balanced_accuracy_is_the_mean_recall_of_classes_with_images():
    matrix = confusion_matrix(LABELS, PREDICTED, 4)
    assert balanced_accuracy(matrix) == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert balanced_accuracy(np.zeros((2, 2), dtype=np.int64)) is None


def test_macro_f1_counts_every_class_true_or_predicted():
    # F1 = 2TP / (2TP + FP + FN): a 6/8 (TP 3, FP 1, FN 1), b 2/4, c 2/3, d 0/1
    expected = (6 / 8 + 2 / 4 + 2 / 3 + 0.0) / 4
    assert macro_f1(confusion_matrix(LABELS, PREDICTED, 4)) == pytest.approx(expected)
    # a class neither true nor predicted is left out, not scored 0
    assert macro_f1(confusion_matrix([0, 1], [0, 1], 3)) == pytest.approx(1.0)


def test_class_scores_and_the_classification_report_agree():
    scores = class_scores(one_hot(PREDICTED), LABELS, NAMES)
    assert scores["per_class_recall"] == {"a": 0.75, "b": 0.5, "c": 0.5, "d": None}
    report = classification_report(one_hot(PREDICTED), LABELS, NAMES)
    assert report["per_class_accuracy"] == scores["per_class_recall"]
    assert report["balanced_accuracy"] == scores["balanced_accuracy"]
    assert report["macro_f1"] == scores["macro_f1"]
    assert report["accuracy"] == pytest.approx(5 / 8)


def test_the_keras_metric_matches_the_numpy_score_across_batches():
    metric = balanced_accuracy_metric(4)
    for part in (slice(0, 3), slice(3, 8)):  # two batches, accumulated
        metric.update_state(one_hot(LABELS[part]), one_hot(PREDICTED[part]))
    expected = balanced_accuracy(confusion_matrix(LABELS, PREDICTED, 4))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    metric.update_state(one_hot(np.array([1])), one_hot(np.array([1])))
    assert float(metric.result()) == pytest.approx(1.0)


# --- class weights ----------------------------------------------------------------------


def test_auto_weighs_classes_only_past_three_times_imbalance():
    skewed = np.array([0] * 40 + [1] * 8)
    weights = class_weights("auto", skewed, ["big", "small"])
    assert weights == pytest.approx({"big": 48 / (2 * 40), "small": 48 / (2 * 8)})
    assert "big has 40" in weights_note("auto", skewed, ["big", "small"])
    three_times = np.array([0] * 30 + [1] * 10)
    assert class_weights("auto", three_times, ["big", "small"]) is None
    assert weights_note("auto", three_times, ["big", "small"]) is None
    assert class_weights("balanced", three_times, ["big", "small"]) is not None
    assert class_weights("none", skewed, ["big", "small"]) is None


def test_mixed_labels_weigh_as_the_mix_of_their_classes():
    weigh = label_weights({"a": 0.5, "b": 2.0, "c": 4.0}, ["a", "b", "c"])
    labels = np.array([[1, 0, 0], [0, 0, 1], [0.75, 0.25, 0]], dtype="float32")
    np.testing.assert_allclose(weigh(labels).numpy(), [0.5, 4.0, 0.875], rtol=1e-6)


def test_weighted_pipeline_with_mixup_yields_weights_of_its_mixed_labels():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 12 + [1] * 4, dtype=np.int32)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    data = DatasetSplit(images, labels, images[:4], labels[:4], ["big", "small"])
    hp = initial_space(["baseline_cnn"], ["mixup"])
    with augmenter_scope(hp, "mixup"):
        mixup = load_plugins()["augmenters"].get("mixup").obj(hp)
    weights = class_weights("balanced", labels, data.class_names)
    train, val = train_val_pipelines(data, 16, seed=0, augment=mixup, class_weights=weights)
    _, y, w = next(iter(train))
    assert not set(np.round(y.numpy().ravel(), 4)) <= {0.0, 1.0}  # labels really mixed
    np.testing.assert_allclose(w.numpy(), y.numpy() @ [16 / 24, 16 / 8], rtol=1e-5)
    assert len(next(iter(val))) == 2  # validation is never weighted


# --- real searches ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory):
    """``automl search`` on 40 vs 8 images with --objective balanced_accuracy and a test set."""
    root = tmp_path_factory.mktemp("imbalance")
    images = make_image_folder(root / "images", classes=("red",), per_class=40)
    make_image_folder(images, classes=("blue",), per_class=8)
    test = make_image_folder(root / "test", classes=("red", "blue"), per_class=4, seed=1)
    out = run_automl(
        "search", images, *QUICK, "--objective", "balanced_accuracy", "--test", test,
        "--out", root / "run", env={"AUTOML_CACHE_DIR": str(root / "cache")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return {"run": root / "run", "stdout": out.stdout}


def test_auto_class_weights_on_for_imbalanced_classes(imbalanced_run):
    run = RunDir(imbalanced_run["run"])
    weights = read_json(run.dataset)["class_weights"]
    assert weights["blue"] > 1 > weights["red"]
    assert all(read_json(t.spec)["class_weights"] == weights for t in run.trial_dirs())
    assert "balanced class weights on: red has 32 training images, blue 6" in " ".join(
        imbalanced_run["stdout"].split()
    )
    card = (run.winner.card_md).read_text()
    assert "class_weights: blue" in card or "class_weights: red" in card


def test_every_trial_records_the_class_balanced_scores(imbalanced_run):
    run = RunDir(imbalanced_run["run"])
    for trial in run.trial_dirs():
        metrics = read_json(trial.metrics)
        assert 0 <= metrics["balanced_accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
        assert set(metrics["per_class_recall"]) == {"red", "blue"}
        assert all(0 <= v <= 1 for v in metrics["per_class_recall"].values())
        history = read_json(trial.history)
        assert len(history["val_balanced_accuracy"]) == metrics["epochs_run"]
        assert metrics["best_epoch"] is not None  # early stopping watched the objective
    test = read_json(run.winner.test_metrics)
    assert 0 <= test["balanced_accuracy"] <= 1 and 0 <= test["macro_f1"] <= 1


def test_balanced_accuracy_ranks_the_leaderboard(imbalanced_run):
    run = RunDir(imbalanced_run["run"])
    board = read_json(run.leaderboard)
    assert len(board) == 2
    assert board[0]["balanced_accuracy"] >= board[1]["balanced_accuracy"]
    assert read_json(run.winner.info)["trial_id"] == board[0]["trial_id"]
    for row in board:  # the tuner was told each trial's objective
        trial = read_json(run.oracle / f"trial_{row['trial_id']}" / "trial.json")
        assert trial["score"] == pytest.approx(row["balanced_accuracy"])


def test_report_card_and_page_show_macro_f1(imbalanced_run):
    run = RunDir(imbalanced_run["run"])
    card = run.winner.card_md.read_text()
    assert "macro-F1" in card and "| class | recall |" in card and "| blue |" in card
    page = run.report_index.read_text()
    assert "macro-F1" in page and "<table id='recall'>" in page
    out = run_automl("report", run.path)
    assert out.returncode == 0, out.stderr
    assert "Class balance (validation)" in out.stdout and "macro-F1" in out.stdout
    assert "test balanced accuracy" in out.stdout
    csv = run_automl("report", run.path, "--csv").stdout
    assert "balanced_accuracy,macro_f1" in csv.splitlines()[0]


def test_a_run_from_before_the_scores_still_reports(imbalanced_run, tmp_path):
    old = RunDir(tmp_path / "old")
    shutil.copytree(imbalanced_run["run"], old.path, symlinks=True)
    for trial in old.trial_dirs():
        metrics = read_json(trial.metrics)
        write_json(trial.metrics, {k: v for k, v in metrics.items() if k not in FIELDS})
        spec = read_json(trial.spec)
        write_json(trial.spec, {k: v for k, v in spec.items() if k != "class_weights"})
    config = read_json(old.config) | {"objective": "val_accuracy"}  # the only ones then
    write_json(old.config, {k: v for k, v in config.items() if k != "class_weights"})
    for path in (old.winner.test_metrics, old.winner.card_json, old.dataset):
        drop = ("balanced_accuracy", "macro_f1", "class_weights")
        write_json(path, {k: v for k, v in read_json(path).items() if k not in drop})
    card = read_json(old.winner.card_json)
    for report in card["evaluation"].values():
        del report["balanced_accuracy"], report["macro_f1"]
    write_json(old.winner.card_json, card)
    out = run_automl("report", old.path)
    assert out.returncode == 0, out.stderr
    assert "Leaderboard" in out.stdout and "Class balance" not in out.stdout
    page = old.report_index.read_text()
    assert "balanced accuracy n/a" in page


def test_balanced_classes_stay_unweighted(tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=8)
    run = quick_search(images, tmp_path / "run", max_trials=1, epochs=1)
    assert run.dataset_summary["class_weights"] is None
    assert not any("class weights" in w for w in run.dataset_summary["warnings"])
    spec = read_json(run.run_dir.trial(run.leaderboard[0].trial_id).spec)
    assert spec["class_weights"] is None
    assert run.leaderboard[0].macro_f1 is not None
