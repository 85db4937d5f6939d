"""Experiment tracking: ``--track tensorboard,mlflow`` on real searches, read back with
TensorBoard's event reader and MLflow's client from real local stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAILURES, make_image_folder, quick_search, run_automl

from automl_core.plugin.manager import load_plugins
from automl_core.rundir import RunDir

EVENTS = str(Path(__file__).parent / "plugins" / "event_tracker.py")
"""A third-party tracker, ``events``: the observer calls it got, in ``events.json``."""

SEARCH = (
    *("--architectures", "small,fails_after_first_epoch", "--augmenters", "none"),
    *("--max-trials", "2", "--epochs", "2", "--executor", "inline", "--no-refit"),
    *("-p", FAILURES, "-p", EVENTS),
)
"""Two trials of two epochs: ``small`` completes, ``fails_after_first_epoch`` fails."""


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A search through the real CLI with both trackers and MLflow's default store
    (``mlflow.db`` in the working folder); its run directory and each trial's result."""
    root = tmp_path_factory.mktemp("tracked")
    make_image_folder(root / "images")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        out = run_automl(
            "search", "images", *SEARCH, "--track", "tensorboard,mlflow,events", "--out", "run",
            cwd=root,
            env={"AUTOML_CACHE_DIR": str(root / "cache")},
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = RunDir(root / "run")
    results = {
        trial.path.name: json.loads(trial.metrics.read_text()) for trial in run_dir.trial_dirs()
    }
    assert sorted(r["status"] for r in results.values()) == ["completed", "failed"]
    return run_dir, results


def by_status(results: dict[str, dict], status: str) -> dict:
    return next(r for r in results.values() if r["status"] == status)


def test_a_plugins_tracker_sees_the_search_then_is_closed(tracked):
    run_dir, results = tracked
    epochs = [
        f"trial {trial_id} epoch {epoch}"
        for trial_id in sorted(results)  # the trials run one after the other, inline
        for epoch in range(1, results[trial_id]["epochs_run"] + 1)
    ]
    seen = json.loads((run_dir.path / "events.json").read_text())
    assert seen == ["search_start", *epochs, "search_end", "close"]


def test_tensorboard_has_each_trials_epochs_hyperparameters_and_final_metrics(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run_dir, results = tracked
    assert sorted(p.name for p in run_dir.tensorboard.iterdir()) == sorted(results)
    for trial_id, result in results.items():
        events = EventAccumulator(str(run_dir.tensorboard / trial_id))
        events.Reload()
        curve = events.Scalars("val_accuracy")
        assert [e.step for e in curve] == list(range(1, result["epochs_run"] + 1))
        session = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = HParamsPluginData.FromString(session).session_start_info.hparams
        assert hparams["architecture"].string_value == result["architecture"]
        assert set(result["hyperparameters"]) <= set(hparams)
        if result["status"] == "completed":
            assert hparams["small/width"].number_value == result["hyperparameters"]["small/width"]
            (best,) = events.Scalars("final/val_accuracy")
            assert best.value == pytest.approx(result["val_accuracy"])
            assert best.step == result["epochs_run"]
        else:
            assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("final/")]


def test_mlflow_holds_the_search_its_trials_and_the_winner(tracked):
    from mlflow import MlflowClient

    run_dir, results = tracked
    saved = json.loads(run_dir.mlflow.read_text())
    assert saved["tracking_uri"] == f"sqlite:///{run_dir.path.parent / 'mlflow.db'}"
    client = MlflowClient(saved["tracking_uri"])
    experiment = client.get_experiment_by_name("automl")
    search = client.get_run(saved["run_id"])
    assert search.info.status == "FINISHED"
    assert search.data.params["max_trials"] == "2"
    assert search.data.params["track"] == "tensorboard,mlflow,events"
    assert search.data.tags["automl.source"] == str(run_dir.path.parent / "images")
    completed, failed = by_status(results, "completed"), by_status(results, "failed")
    assert search.data.tags["automl.winner"] == completed["trial_id"]
    assert search.data.metrics["final/val_accuracy"] == pytest.approx(completed["val_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(saved["run_id"], "winner")}
    assert {"winner/model.keras", "winner/labels.json", "winner/model_card.md"} <= artifacts

    trials = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{saved['run_id']}'"
    )
    logged = {t.data.tags["automl.trial_id"]: t for t in trials}
    assert sorted(logged) == sorted(results)
    for trial_id, result in results.items():
        trial = logged[trial_id]
        assert trial.data.params["architecture"] == result["architecture"]
        for name, value in result["hyperparameters"].items():
            assert trial.data.params[name] == str(value)
        history = client.get_metric_history(trial.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, result["epochs_run"] + 1))
    done, broken = logged[completed["trial_id"]], logged[failed["trial_id"]]
    assert (done.info.status, broken.info.status) == ("FINISHED", "FAILED")
    assert done.data.metrics["final/val_accuracy"] == pytest.approx(completed["val_accuracy"])
    assert broken.data.tags["automl.error"] == failed["error"]
    assert not [key for key in broken.data.metrics if key.startswith("final/")]


def trials_in(store: Path, parent: str) -> dict[str, list]:
    """Each trial id's runs under the search's run ``parent`` in the file store."""
    from mlflow import MlflowClient

    client = MlflowClient(store.as_uri())
    experiment = client.get_experiment_by_name("automl").experiment_id
    found: dict[str, list] = {}
    for trial in client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'"):
        found.setdefault(trial.data.tags["automl.trial_id"], []).append(trial)
    return found


def test_a_resumed_search_logs_each_trial_once(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from automl_core.engine.search import resume

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's local file store
    first, second = tmp_path / "store", tmp_path / "another_store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first.as_uri())
    folder = make_image_folder(tmp_path / "images")
    run = quick_search(folder, tmp_path / "run", track=["mlflow"], max_trials=1, epochs=1)
    parent = json.loads(run.run_dir.mlflow.read_text())["run_id"]
    assert run.plugins.manager.get_plugin("tracker:mlflow") is None  # for that search only

    resumed = resume(run.run_dir.path, max_trials=2)
    assert json.loads(run.run_dir.mlflow.read_text())["run_id"] == parent
    once = trials_in(first, parent)
    assert sorted(once) == sorted(r.trial_id for r in resumed.results)
    assert [len(runs) for runs in once.values()] == [1, 1]
    assert MlflowClient(first.as_uri()).get_run(parent).info.status == "FINISHED"

    # a store that never saw the search: the trials it ran before are logged from their
    # saved results, their epochs included
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second.as_uri())
    resumed = resume(run.run_dir.path, max_trials=3)
    moved = json.loads(run.run_dir.mlflow.read_text())["run_id"]
    assert moved != parent
    again = trials_in(second, moved)
    assert sorted(again) == sorted(r.trial_id for r in resumed.results)
    assert [len(runs) for runs in again.values()] == [1, 1, 1]
    earliest = min(again)
    history = MlflowClient(second.as_uri()).get_metric_history(
        again[earliest][0].info.run_id, "val_accuracy"
    )
    assert [m.step for m in history] == [1]
    assert {runs[0].info.status for runs in again.values()} == {"FINISHED"}


def test_trackers_are_registered_with_the_extra_each_needs():
    trackers = load_plugins()["trackers"]
    assert trackers.names() == ["tensorboard", "mlflow"]
    assert trackers.get("mlflow").info["install"] == "automl-images[mlflow]"
    assert trackers.get("tensorboard").info["install"] == "automl-images[tensorboard]"


@pytest.mark.parametrize(
    ("track", "message"),
    [
        ("mlfow", "unknown tracker 'mlfow'; did you mean 'mlflow'?"),
        ("mlflow", "the tracker 'mlflow' needs mlflow: pip install 'automl-images[mlflow]'"),
    ],
)
def test_a_tracker_unknown_or_not_installed_stops_before_any_work(tmp_path, track, message):
    blocker = tmp_path / "no_mlflow.py"
    blocker.write_text("import sys\n\nsys.modules['mlflow'] = None  # as if not installed\n")
    folder = make_image_folder(tmp_path / "images", per_class=2)
    out = run_automl(
        "search", folder, "--track", track, "--out", tmp_path / "run", "-p", blocker
    )  # fmt: skip
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
