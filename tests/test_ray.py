"""The ray executor: trials as Ray tasks on a local Ray instance the test starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_image_folder, run_automl

from automl_plugins.ray_executor import plan_resources

FAILURES = Path(__file__).parent / "plugins" / "trial_failures.py"


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray instance shared by this module's tests; its address."""
    ray = pytest.importorskip(
        "ray", reason="the ray extra is not installed (pip install -e '.[ray]')"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def trial_metrics(run_dir: Path) -> list[dict]:
    paths = sorted((run_dir / "trials").glob("*/metrics.json"))
    return [json.loads(p.read_text()) for p in paths]


def test_cli_search_runs_two_trials_on_a_ray_cluster(ray_cluster, tmp_path):
    images = make_image_folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    out = run_automl(
        "search", images, "-p", FAILURES, "--out", run_dir,
        "--architectures", "small", "--augmenters", "none",
        "--max-trials", "2", "--epochs", "1", "--no-refit",
        "--executor", "ray", "--ray-address", ray_cluster, "--workers", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trials = trial_metrics(run_dir)
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert all(t["device"].startswith("ray:") and t["device"].endswith("/cpu") for t in trials)
    assert all(t["epochs_run"] == 1 for t in trials)
    assert len(json.loads((run_dir / "leaderboard.json").read_text())) == 2
    assert (run_dir / "winner" / "model.keras").exists()


def test_a_trial_process_that_dies_is_a_failed_trial(ray_cluster, tmp_path):
    from automl_core.engine.search import search
    from automl_core.engine.settings import SearchConfig

    images = make_image_folder(tmp_path / "images")
    config = SearchConfig(
        str(images),
        architectures=["kills_itself"],
        augmenters=["none"],
        executor="ray",
        max_trials=1,
        epochs=1,
        out=str(tmp_path / "run"),
        plugins=[str(FAILURES)],
    )
    run = search(config)  # joins the Ray this process started
    (result,) = run.results
    assert result.status == "failed"
    assert "killed by SIGKILL" in result.error
    assert result.device.startswith("ray:")
    assert run.leaderboard == []


def test_without_ray_the_executor_says_how_to_install_it_before_any_work(tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=4)
    script = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from automl_core.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "search", str(images), "--executor", "ray",
         "--out", str(tmp_path / "run"), "--architectures", "baseline_cnn"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "automl: error: the executor 'ray' needs ray: pip install 'automl-images[ray]'"
    )
    assert not (tmp_path / "run").exists()  # said before anything was written


def test_trials_get_a_gpu_each_or_a_share_of_the_cpus():
    on_gpus = plan_resources({"CPU": 16, "GPU": 4}, nodes=2, workers=None)
    assert (on_gpus.trials, on_gpus.num_gpus, on_gpus.threads) == (4, 1, None)
    assert plan_resources({"CPU": 16, "GPU": 4}, nodes=2, workers=2).num_gpus == 0.5
    per_node = plan_resources({"CPU": 16}, nodes=2, workers=None)
    assert (per_node.trials, per_node.num_cpus, per_node.num_gpus, per_node.threads) == (2, 8, 0, 8)
    assert plan_resources({"CPU": 2}, nodes=1, workers=4).num_cpus == 1
