"""Trials in their own processes: parallel workers, failures, kill and resume, Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_automl

from automl_core.execution.devices import plan_slots, visible_gpus

FAILURES = Path(__file__).parent / "plugins" / "trial_failures.py"


def search_args(folder, run_dir, *extra):
    return [
        "search",
        folder,
        "-p",
        FAILURES,
        "--out",
        run_dir,
        "--augmenters",
        "none",
        "--no-refit",
        *extra,
    ]


def leaderboard(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "leaderboard.json").read_text())


def trial_metrics(run_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in (run_dir / "trials").glob("*/metrics.json")
    }


def test_two_workers_run_trials_at_once_with_the_same_results(image_folder, tmp_path):
    common = (
        "--architectures",
        "sleepy",
        "--max-trials",
        "2",
        "--epochs",
        "20",
        "--patience",
        "20",
        "--seed",
        "5",
    )
    one = run_automl(*search_args(image_folder, tmp_path / "one", *common))
    two = run_automl(*search_args(image_folder, tmp_path / "two", *common, "--workers", "2"))
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr

    parallel = sorted(trial_metrics(tmp_path / "two").values(), key=lambda m: m["trial_id"])
    first, second = parallel
    assert first["started_at"] < second["ended_at"] and second["started_at"] < first["ended_at"]
    assert {m["device"] for m in parallel} == {"cpu:0", "cpu:1"}

    serial = sorted(trial_metrics(tmp_path / "one").values(), key=lambda m: m["trial_id"])
    for alone, together in zip(serial, parallel, strict=True):
        assert alone["hyperparameters"] == together["hyperparameters"]
        assert alone["val_loss"] == pytest.approx(together["val_loss"], rel=1e-3)
    # on the CPU no process gets ready ahead of its trial: it would slow the running one
    logs = [(tmp_path / "one" / "trials" / m["trial_id"] / "log.txt").read_text() for m in serial]
    assert not any("warm process" in log for log in logs)


def test_every_kind_of_failure_is_recorded_and_the_search_goes_on(image_folder, tmp_path):
    """The warm start tries each of the five architectures once, at its defaults."""
    run_dir = tmp_path / "run"
    out = run_automl(
        *search_args(
            image_folder,
            run_dir,
            "--architectures",
            "fails_in_build,fails_after_first_epoch,diverges,kills_itself,small",
            "--max-trials",
            "5",
            "--epochs",
            "3",
            "--patience",
            "3",
            "--max-failures",
            "5",
        )
    )
    assert out.returncode == 0, out.stderr
    by_architecture = {m["architecture"]: m for m in trial_metrics(run_dir).values()}
    assert set(by_architecture) == {
        "fails_in_build",
        "fails_after_first_epoch",
        "diverges",
        "kills_itself",
        "small",
    }
    reasons = {name: m["error"] for name, m in by_architecture.items() if m["status"] == "failed"}
    assert "cannot build this candidate" in reasons["fails_in_build"]
    assert "exploded after the first epoch" in reasons["fails_after_first_epoch"]
    assert by_architecture["fails_after_first_epoch"]["epochs_run"] == 1
    assert "diverged" in reasons["diverges"]
    assert "killed by SIGKILL" in reasons["kills_itself"]
    assert by_architecture["small"]["status"] == "completed"
    assert all(row["architecture"] == "small" for row in leaderboard(run_dir))
    assert "killed by SIGKILL" in out.stdout
    assert (run_dir / "winner" / "model.keras").exists()


def start_search(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "automl_core.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the search"
        time.sleep(0.2)


def test_killed_search_resumes_without_rerunning_finished_trials(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    search = start_search(
        *search_args(
            image_folder,
            run_dir,
            "--architectures",
            "small",
            "--max-trials",
            "3",
            "--epochs",
            "30",
            "--patience",
            "30",
        )
    )
    finished = run_dir / "trials" / "0" / "metrics.json"
    wait_for(lambda: finished.exists() and (run_dir / "trials" / "1" / "spec.json").exists())
    before = finished.read_text()
    search.send_signal(signal.SIGKILL)
    search.wait()
    time.sleep(1)  # the trial process dies with its parent
    assert not (run_dir / "trials" / "1" / "metrics.json").exists()

    out = run_automl("search", "--resume", run_dir)
    assert out.returncode == 0, out.stderr
    assert "resuming: 1 trial(s) already done" in out.stdout
    assert finished.read_text() == before
    metrics = trial_metrics(run_dir)
    assert sorted(metrics) == ["0", "1", "2"]
    assert all(m["status"] == "completed" for m in metrics.values())
    assert len(leaderboard(run_dir)) == 3
    assert json.loads((run_dir / "state.json").read_text())["status"] == "finished"


def test_ctrl_c_stops_gracefully_and_the_search_resumes(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    search = start_search(
        *search_args(
            image_folder,
            run_dir,
            "--architectures",
            "small",
            "--max-trials",
            "2",
            "--epochs",
            "200",
            "--patience",
            "200",
        )
    )
    log = run_dir / "trials" / "0" / "spec.json"
    wait_for(log.exists)
    search.send_signal(signal.SIGINT)
    stdout, stderr = search.communicate(timeout=240)
    assert search.returncode == 130, stderr
    assert "stopping: no new trials" in stderr
    assert f"automl search --resume {run_dir}" in stdout.replace("\n", "")
    assert json.loads((run_dir / "state.json").read_text())["status"] == "interrupted"
    stopped = trial_metrics(run_dir)["0"]
    assert stopped["status"] == "stopped"
    assert stopped["epochs_run"] < 200
    assert not (run_dir / "trials" / "1").exists()

    out = run_automl("search", "--resume", run_dir, "--max-trials", "2")
    assert out.returncode == 0, out.stderr
    assert {m["status"] for m in trial_metrics(run_dir).values()} == {"completed"}
    assert len(leaderboard(run_dir)) == 2


def test_gpu_slots_follow_devices_and_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert visible_gpus() == ["1", "3"]
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"]) for s in plan_slots()] == [
        ("gpu:1", "1"),
        ("gpu:3", "3"),
    ]
    assert [s.name for s in plan_slots("0,2", workers=2)] == [
        "gpu:0/0",
        "gpu:0/1",
        "gpu:2/0",
        "gpu:2/1",
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = plan_slots(workers=2)
    assert [s.name for s in cpu] == ["cpu:0", "cpu:1"]
    assert all(s.threads == max(1, (os.cpu_count() or 1) // 2) for s in cpu)


def test_trial_processes_import_tensorflow_without_unused_libraries_plugins_still_can():
    code = (
        "import sys\n"
        "from automl_core.training.runtime import UNUSED_IN_TRIALS, configure_tensorflow\n"
        "configure_tensorflow()\n"
        "print(sorted(name for name in UNUSED_IN_TRIALS if name in sys.modules))\n"
        "import sklearn.base, matplotlib.pyplot\n"
        "print('imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "imported"]


def test_simulated_gpus_pin_each_trial_to_its_device(image_folder, tmp_path):
    out = run_automl(
        *search_args(
            image_folder,
            tmp_path / "run",
            "--architectures",
            "small",
            "--max-trials",
            "3",
            "--epochs",
            "1",
            "--devices",
            "0,1",
        )
    )
    assert out.returncode == 0, out.stderr
    metrics = trial_metrics(tmp_path / "run")
    assert {m["device"] for m in metrics.values()} == {"gpu:0", "gpu:1"}
    # the third trial follows one on its GPU: its process got ready while that one trained
    log = (tmp_path / "run" / "trials" / "2" / "log.txt").read_text()
    assert "warm process" in log


def test_bad_devices_and_unknown_run_dir_are_usage_errors(image_folder, tmp_path):
    out = run_automl("search", image_folder, "--devices", "first")
    assert out.returncode == 2
    assert "--devices takes GPU ids like 0,2" in out.stderr
    out = run_automl("search", "--resume", tmp_path / "nothing")
    assert out.returncode == 2
    assert "is not a search run directory" in out.stderr
