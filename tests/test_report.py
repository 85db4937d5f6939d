"""The report: live dashboard, plain lines, ``automl report``, plots and the HTML page."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tempfile

import pytest
from conftest import make_image_folder, run_automl
from PIL import Image
from rich.console import Console

from automl_core.engine.search import search
from automl_core.engine.settings import SearchConfig
from automl_core.plugin.manager import load_plugins
from automl_core.reporting.live import RichReporter
from automl_core.reporting.plots import pareto_front
from automl_core.rundir import read_json, write_json

PLOTS = (
    "learning_curves.png",
    "accuracy_vs_time.png",
    "confusion_matrix.png",
    "per_class_accuracy.png",
)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One two-trial search (a process per trial) watched by a terminal reporter, a plain
    one and a verbose plain one at once."""
    root = tmp_path_factory.mktemp("report")
    images = make_image_folder(root / "images")
    terminal, plain, verbose = io.StringIO(), io.StringIO(), io.StringIO()
    plugins = load_plugins()
    plugins.manager.register(
        RichReporter(Console(file=terminal, force_terminal=True, width=140)), name="terminal"
    )
    plugins.manager.register(RichReporter(Console(file=plain, width=140)), name="plain")
    plugins.manager.register(
        RichReporter(Console(file=verbose, width=140), verbose=True), name="verbose"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        config = SearchConfig(
            str(images),
            architectures=["baseline_cnn"],
            augmenters=["none", "basic"],
            max_trials=2,
            epochs=2,
            time_budget=600,
            out=str(root / "run"),
        )
        search(config, plugins)
    return {"run": root / "run"} | {
        name: out.getvalue()
        for name, out in (("terminal", terminal), ("plain", plain), ("verbose", verbose))
    }


def test_live_dashboard_on_a_terminal(searched):
    raw = searched["terminal"]
    assert "\x1b[1A" in raw  # the cursor moves up to redraw: a live view, not lines
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    for text in ("left of 10m00s", "best so far", "devices busy", "epochs", "2/2"):
        assert text in out
    for column in ("status", "architecture", "augmenter", "val_acc", "best", "elapsed"):
        assert column in out
    assert "completed" in out and "cpu:0" in out
    assert "Leaderboard" in out and "run/report/index.html" in out


def test_plain_lines_without_a_terminal(searched):
    out = searched["plain"]
    assert "\x1b[" not in out
    lines = out.splitlines()
    for trial in ("0", "1"):
        assert any(line.startswith(f"trial {trial} started: baseline_cnn") for line in lines)
    assert not any(" epoch " in line for line in lines)  # verbose ones say each epoch
    assert any("left of 10m00s" in line for line in lines)
    assert "Leaderboard (by val_accuracy)" in out


def test_verbose_plain_lines_say_each_epoch(searched):
    lines = searched["verbose"].splitlines()
    for trial in ("0", "1"):
        assert any(line.startswith(f"trial {trial} epoch 2/") for line in lines)


def test_search_writes_plots_and_page(searched):
    folder = searched["run"] / "report"
    for name in PLOTS:
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.width > 300
    page = (folder / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert "http://" not in page and "https://" not in page  # no external assets
    assert "id='leaderboard'" in page and "Model card" in page


def test_report_command_re_renders_a_run(searched, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(searched["run"], run)
    shutil.rmtree(run / "report")
    out = run_automl("report", run)
    assert out.returncode == 0, out.stderr
    assert "finished" in out.stdout and "Leaderboard" in out.stdout
    assert "baseline_cnn" in out.stdout and "winner:" in out.stdout
    assert all((run / "report" / name).is_file() for name in (*PLOTS, "index.html"))


def test_report_json_and_csv(searched):
    out = run_automl("report", searched["run"], "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "finished" and report["time_budget"] == 600
    assert [t["rank"] for t in report["trials"]] == [1, 2]
    assert sorted(t["trial_id"] for t in report["trials"]) == ["0", "1"]
    assert report["winner"]["evaluation"]["validation"]["images"] == 6

    out = run_automl("report", searched["run"], "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert float(rows[0]["val_accuracy"]) >= float(rows[1]["val_accuracy"])
    assert "baseline_cnn/learning_rate" in json.loads(rows[0]["hyperparameters"])


def test_report_of_an_interrupted_run_without_winner(searched, tmp_path):
    """A search stopped before any trial ended: one trial never finished, no winner."""
    run = tmp_path / "run"
    shutil.copytree(searched["run"], run)
    shutil.rmtree(run / "winner")
    shutil.rmtree(run / "report")
    (run / "trials" / "1" / "metrics.json").unlink()
    (run / "trials" / "0" / "metrics.json").write_text(
        json.dumps(
            read_json(run / "trials" / "0" / "metrics.json")
            | {"status": "failed", "error": "ValueError: broken candidate"}
        )
    )
    write_json(run / "state.json", read_json(run / "state.json") | {"status": "interrupted"})
    augmenters = [read_json(run / "trials" / t / "spec.json")["augmenter"] for t in ("0", "1")]
    out = run_automl("report", run)
    assert out.returncode == 0, out.stderr
    assert "interrupted" in out.stdout and "no winner saved" in out.stdout
    assert f"trial 0 baseline_cnn + {augmenters[0]}: failed: ValueError: broken" in out.stdout
    assert f"trial 1 baseline_cnn + {augmenters[1]}: unfinished" in out.stdout
    page = (run / "report" / "index.html").read_text()
    assert "No trial completed" in page and "broken candidate" in page
    assert page.count("data:image/png") == 1  # learning curves only: nothing ranked, no card
    report = json.loads(run_automl("report", run, "--json").stdout)
    assert [t["status"] for t in report["trials"]] == ["failed", "unfinished"]


def test_report_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    out = run_automl("report", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"automl: error: {str(tmp_path)!r} is not a search run directory (no config.json)"
    ]


def test_quiet_search_prints_nothing(searched, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(searched["run"], run)
    (run / "report" / "index.html").unlink()
    quiet = run_automl("search", "--resume", run, "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert (run / "report" / "index.html").is_file()


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9)], [0, 1, 3]),
        ([(5.0, 0.9), (1.0, 0.9), (2.0, 0.8)], [1]),
        ([(3.0, 0.2), (1.0, 0.1), (1.0, 0.3)], [2]),
    ],
)
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def test_page_renders_in_headless_chromium(searched):
    """The page as a browser shows it: the leaderboard rows and every plot decoded."""
    from selenium import webdriver

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="automl-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get((searched["run"] / "report" / "index.html").resolve().as_uri())
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#leaderboard tr')].map(r => r.innerText)"
        )
        images = browser.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])"
        )
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert rows[0].split()[:3] == ["#", "trial", "architecture"]
    ranked = [row.split()[:3] for row in rows[1:]]
    assert [rank for rank, _, _ in ranked] == ["1", "2"]
    assert sorted(trial for _, trial, _ in ranked) == ["0", "1"]
    assert {architecture for _, _, architecture in ranked} == {"baseline_cnn"}
    assert len(images) == len(PLOTS)
    assert all(complete and width > 300 for _, complete, width in images), images
    assert "Learning curves" in [alt for alt, _, _ in images]
