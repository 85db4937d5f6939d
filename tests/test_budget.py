"""Tuners, the time budget, warm start, refit and test-time augmentation."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import FAILURES, REPO, quick_search, run_automl

TINY_CNN = str(REPO / "examples" / "plugins" / "tiny_cnn.py")
FINISHING_SECONDS = 10
"""The most a search may run past its budget on tiny data (docs/concepts.md)."""


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_every_tuner_runs_a_three_trial_search(image_folder, tmp_path, tuner):
    # Hyperband's first bracket needs room to halve: 9 epochs gives 1-epoch rungs
    epochs = 9 if tuner == "hyperband" else 2
    run = quick_search(image_folder, tmp_path / tuner, tuner=tuner, epochs=epochs)
    assert len(run.results) == 3
    assert all(r.status == "completed" for r in run.results)
    assert len({json.dumps(r.hyperparameters, sort_keys=True) for r in run.results}) >= 2
    assert run.winner_path.exists()


def test_hyperband_promotes_trials_to_more_epochs(image_folder, tmp_path):
    run = quick_search(image_folder, tmp_path / "run", tuner="hyperband", epochs=9, max_trials=12)
    promoted = [r for r in run.results if r.initial_epoch > 0]
    assert promoted, "no trial was trained further from an earlier one"
    assert all(r.epochs_run > r.initial_epoch for r in promoted)


def test_warm_start_tries_every_architecture_at_its_defaults_cheapest_first(image_folder, tmp_path):
    run = quick_search(
        image_folder,
        tmp_path / "run",
        architectures=["baseline_cnn", "small", "tiny_cnn"],
        plugins=[FAILURES, TINY_CNN],
        max_trials=4,
        epochs=1,
    )
    first = run.results[:3]
    # small declares cost=0.5; the others declare none and keep registry order
    assert [r.architecture for r in first] == ["small", "baseline_cnn", "tiny_cnn"]
    assert first[0].hyperparameters["small/width"] == 8
    assert first[1].hyperparameters["baseline_cnn/filters"] == 32
    assert first[1].hyperparameters["baseline_cnn/dense_units"] == 64
    assert first[2].hyperparameters["tiny_cnn/filters"] == 16


def test_a_candidate_too_slow_for_its_time_never_starts_and_the_best_trains_last(
    image_folder, tmp_path
):
    run = quick_search(
        image_folder,
        tmp_path / "run",
        architectures=["small", "unaffordable"],
        time_budget=300,  # screens 3 candidates for 22 s each (at most)
        max_trials=4,
        epochs=2,
    )
    trained = [(r.architecture, r.stage) for r in run.results if r.status == "completed"]
    assert trained[0] == ("small", "screen")
    # "unaffordable" (cost=1e9: a billion times slower than small, as measured) never ran
    assert "unaffordable" not in {architecture for architecture, _ in trained}
    assert any("unaffordable" in note and "does not fit" in note for note in run.notes)
    final = next(r for r in run.results if r.stage == "final")
    assert final.architecture == "small"
    # the final trains the best screened candidate with its values (a default one with
    # its defaults, not values drawn at random)
    screened = [r for r in run.results if r.stage == "screen" and r.status == "completed"]
    best = max(screened, key=lambda r: (r.val_accuracy, -r.step_seconds))
    assert final.hyperparameters == best.hyperparameters
    assert final.train_images == len(run.data.y_train)
    assert all(r.step_seconds and r.val_seconds for r in run.results if r.status == "completed")


def test_time_budget_stops_trials_at_the_deadline_and_reports_the_overshoot(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    out = run_automl(
        "search",
        image_folder,
        "-p",
        FAILURES,
        "--architectures",
        "sleepy",
        "--augmenters",
        "none",
        "--time-budget",
        "20s",
        "--epochs",
        "500",
        "--patience",
        "500",
        "--out",
        run_dir,
    )
    assert out.returncode == 0, out.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished"
    assert state["time_budget"] == 20
    # trials end before the deadline, keeping 2% of the budget for finishing the winner;
    # finishing (saving, scoring, the model card and the report) takes a few seconds on
    # tiny data: docs/concepts.md, "Time budget"
    assert state["elapsed_seconds"] <= 20 * 1.02 + FINISHING_SECONDS
    summary = out.stdout.replace("\n", " ")
    assert "budget" in summary and ("over (the grace" in summary or "left of 0m20s" in summary)
    metrics = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*/metrics.json")]
    assert metrics and all(m["status"] == "completed" for m in metrics)
    assert all(m["epochs_run"] < 500 for m in metrics)  # cut by the deadline, not finished
    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_trials"] is None
    assert (run_dir / "winner" / "model.keras").exists()


def test_refit_trains_the_winner_on_all_images(image_folder, tmp_path):
    run = quick_search(image_folder, tmp_path / "run", max_trials=1, epochs=2, refit=True)
    winner = json.loads(run.run_dir.winner.info.read_text())
    assert winner["refit"]["images"] == len(run.data.y_train) + len(run.data.y_val) == 36
    assert winner["refit"]["epochs"] == run.leaderboard[0].best_epoch
    refit = json.loads(run.run_dir.trial("refit").metrics.read_text())
    assert refit["status"] == "completed"
    searched = keras.models.load_model(run.leaderboard[0].model_path)
    saved = keras.models.load_model(run.winner_path)
    images = np.asarray(run.data.x_val[:4], dtype="float32")
    if not winner["test_time_augmentation"]["kept"]:
        before, after = searched.predict(images, verbose=0), saved.predict(images, verbose=0)
        assert not np.allclose(before, after)


def test_flip_test_time_augmentation_is_measured_and_kept_only_when_it_helps(
    image_folder, tmp_path
):
    run = quick_search(image_folder, tmp_path / "run", max_trials=1)
    best = run.leaderboard[0]
    assert 0 <= best.val_accuracy_tta <= 1
    tta = json.loads(run.run_dir.winner.info.read_text())["test_time_augmentation"]
    assert tta["kept"] == (best.val_accuracy_tta > best.val_accuracy)
    model = keras.models.load_model(run.winner_path)
    assert ("flip_tta" in model.name) == tta["kept"]


def test_bad_time_budget_is_a_usage_error(image_folder):
    out = run_automl("search", image_folder, "--time-budget", "soon")
    assert out.returncode == 2
    assert "is not a duration like 90s, 30m or 2h" in out.stderr


def test_a_trial_the_engine_chooses_runs_its_candidate_at_its_defaults(tmp_path):
    """keras-tuner fills the values a trial lacks at random: a warm-start default, or a
    final run of one, must get the candidate's declared defaults instead."""
    from automl_core.engine.oracle import Oracle
    from automl_core.rundir import RunDir
    from automl_core.training.space import architecture_scope, initial_space
    from automl_plugins.tuners import random_search

    oracle = Oracle.create(
        random_search,
        objective="val_accuracy",
        direction="max",
        max_trials=10,
        max_epochs=2,
        seed=0,
        architectures=["net"],
        augmenters=["none"],
        run_dir=RunDir(tmp_path),
    )
    declared = initial_space(["net"], ["none"])
    with architecture_scope(declared, "net"):
        declared.Choice("width", [8, 16, 32, 64], default=8)
        declared.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
    oracle.grow(declared.get_config())
    values = []
    for _ in range(5):
        trial = oracle.new_trial()
        oracle.choose(trial, {"architecture": "net", "augmenter": "none"})
        values.append(dict(trial.hyperparameters.values))
    assert all(v["net/width"] == 8 and v["net/learning_rate"] == 1e-3 for v in values)
