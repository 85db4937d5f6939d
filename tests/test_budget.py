"""Tuners, the time budget, warm start, refit and test-time augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO, run_automl

from automl_core.engine.search import rank, search
from automl_core.engine.settings import SearchConfig

FAILURES = str(Path(__file__).parent / "plugins" / "trial_failures.py")
TINY_CNN = str(REPO / "examples" / "plugins" / "tiny_cnn.py")


def quick_search(folder, out, **settings):
    config = dict(
        source=str(folder),
        out=str(out),
        executor="inline",
        augmenters=["none"],
        architectures=["small"],
        plugins=[FAILURES],
        max_trials=3,
        epochs=2,
        refit=False,
    )
    return search(SearchConfig(**(config | settings)))


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


def test_a_default_that_cannot_train_in_the_time_left_gives_way_to_the_best_trial_continued(
    image_folder, tmp_path
):
    run = quick_search(
        image_folder,
        tmp_path / "run",
        architectures=["small", "unaffordable"],
        time_budget=300,
        max_trials=3,
        epochs=3,
        patience=1,
    )
    first, second, third = run.results
    assert (first.architecture, first.initial_epoch) == ("small", 0)

    def continued(trial):
        return trial.hp_config["values"].get("tuner/trial_id")

    # "unaffordable" was skipped: the best trial is continued from its weights, and
    # through its whole new cycle of --epochs, whatever the patience
    assert continued(second) == first.trial_id
    assert second.hyperparameters == first.hyperparameters
    assert (second.initial_epoch, second.epochs_run) == (first.epochs_run, first.epochs_run + 3)
    if rank([first, second], "val_accuracy")[0] is second:
        assert continued(third) == second.trial_id
    else:  # continuing the same trial again would repeat the same training: the tuner picks
        assert continued(third) is None


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
    assert state["overshoot_seconds"] == max(0.0, state["elapsed_seconds"] - 20)
    summary = out.stdout.replace("\n", " ")
    assert "budget" in summary and ("over (the grace" in summary or "left of 0m20s" in summary)
    metrics = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*/metrics.json")]
    assert metrics and all(m["status"] == "completed" for m in metrics)
    assert all(m["epochs_run"] < 500 for m in metrics)  # cut by the deadline, not finished
    # the first warm-start trial plans its epochs within a tenth of the budget
    first = json.loads((run_dir / "trials" / "0000" / "spec.json").read_text())
    assert first["seconds"] == 2.0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_trials"] is None
    assert (run_dir / "winner" / "model.keras").exists()


def test_refit_trains_the_winner_on_all_images(image_folder, tmp_path):
    run = quick_search(image_folder, tmp_path / "run", max_trials=1, epochs=2, refit=True)
    winner = json.loads((run.run_dir.winner / "winner.json").read_text())
    assert winner["refit"]["images"] == len(run.data.y_train) + len(run.data.y_val) == 36
    assert winner["refit"]["epochs"] == run.leaderboard[0].best_epoch
    refit = json.loads((run.run_dir.trial("refit") / "metrics.json").read_text())
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
    tta = json.loads((run.run_dir.winner / "winner.json").read_text())["test_time_augmentation"]
    assert tta["kept"] == (best.val_accuracy_tta > best.val_accuracy)
    model = keras.models.load_model(run.winner_path)
    assert ("flip_tta" in model.name) == tta["kept"]


def test_bad_time_budget_is_a_usage_error(image_folder):
    out = run_automl("search", image_folder, "--time-budget", "soon")
    assert out.returncode == 2
    assert "is not a duration like 90s, 30m or 2h" in out.stderr
