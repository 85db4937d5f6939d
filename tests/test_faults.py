"""Faults a real search meets: SIGKILL at any moment, a write cut short, a full disk.

Every search here is the real CLI in its own process, killed for real; what must hold
after each fault is the same: a trial that had finished is kept and never trained again,
and ``automl search --resume`` completes the search.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_image_folder, run_automl

FAILURES = Path(__file__).parent / "plugins" / "trial_failures.py"
MAX_TRIALS = 4
SEARCH = [
    *("-p", FAILURES, "--executor", "local", "--architectures", "small"),
    *("--augmenters", "none", "--max-trials", MAX_TRIALS, "--epochs", 2, "--no-refit"),
]


def start(*args) -> subprocess.Popen:
    """The real CLI, running (stderr kept for the test to read)."""
    command = [sys.executable, "-m", "automl_core.cli", *map(str, args), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(run_dir: Path) -> dict[str, float]:
    """Trial id -> when it started, for every trial whose result says completed."""
    results = (json.loads(p.read_text()) for p in run_dir.glob("trials/*/metrics.json"))
    return {r["trial_id"]: r["started_at"] for r in results if r["status"] == "completed"}


def wait_for(condition: Callable[[], object], process: subprocess.Popen) -> bool:
    """Poll ``condition`` while ``process`` runs; False if it ended first."""
    while not condition():
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return True


def appears(run_dir: Path, pattern: str) -> Callable[[], bool]:
    """A condition: a file matching ``pattern`` that was not there when it was made."""
    before = set(run_dir.glob(pattern))
    return lambda: bool(set(run_dir.glob(pattern)) - before)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL, as the out-of-memory killer or `kill -9` stops a search."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(1)  # its trial processes die with it (PR_SET_PDEATHSIG)


def assert_kept(run_dir: Path, done: dict[str, float]) -> None:
    """Every trial in ``done`` still has its result, from the same (only) training."""
    now = finished(run_dir)
    assert {t: now.get(t) for t in done} == done


def assert_completed(run_dir: Path, done: dict[str, float]) -> None:
    """The search ended with all its trials, ``done`` among them, none trained twice."""
    board = {row["trial_id"]: row for row in json.loads((run_dir / "leaderboard.json").read_text())}
    assert len(board) == MAX_TRIALS
    assert {row["status"] for row in board.values()} == {"completed"}
    assert {t: board[t]["started_at"] for t in done if t in board} == done
    assert_kept(run_dir, done)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "finished"


# (what the kill interrupts, the file whose appearance triggers it, delay after that)
KILL_POINTS = [
    ("before the first trial: the oracle's files not written yet", "config.json", 0.0),
    ("while the oracle writes a new trial", "oracle/trial_*/trial.json", 0.0),
    ("between trials: a result saved, not yet recorded", "trials/*/metrics.json", 0.0),
    ("during a trial", "trials/*/spec.json", 0.5),
]


def test_sigkill_at_any_moment_loses_no_trial_and_trains_none_twice(image_folder, tmp_path):
    """One search killed at each moment in turn, resumed after each kill; the trial the
    last kill cut short is then finished by its own worker process, so that the search
    meets a trial that finished without its knowing (it must record it, not train it)."""
    run_dir = tmp_path / "run"
    command = ["search", image_folder, "--out", run_dir, *SEARCH]
    done: dict[str, float] = {}
    for moment, pattern, delay in KILL_POINTS:
        trigger = appears(run_dir, pattern)
        search = start(*command)
        assert wait_for(trigger, search), f"the search ended before the kill {moment}"
        time.sleep(delay)
        kill(search)
        assert search.returncode == -signal.SIGKILL
        assert_kept(run_dir, done)
        done |= finished(run_dir)
        command = ["search", "--resume", run_dir]
    specs = run_dir.glob("trials/*/spec.json")
    cut = [s.parent.name for s in specs if not s.with_name("metrics.json").exists()]
    assert cut  # the last kill cut a trial short: now it ends, the search never hearing of it
    for trial_id in cut:
        worker = [sys.executable, "-m", "automl_core.execution.worker", run_dir, trial_id]
        subprocess.run(worker, stdout=subprocess.DEVNULL, check=True, timeout=300)
    done |= finished(run_dir)
    assert set(cut) <= set(done)

    out = run_automl(*command)
    assert out.returncode == 0, out.stderr
    assert_completed(run_dir, done)


ATOMIC_WRITES = """
import json, resource, sys
from pathlib import Path
from automl_core.engine.oracle import Oracle
from automl_core.rundir import RunDir
from automl_plugins.tuners import random_search

def oracle():
    names = [f"a{i}" for i in range(100)]
    return Oracle.create(random_search, objective="val_accuracy", direction="max",
        max_trials=100, max_epochs=1, seed=0, architectures=names, augmenters=["none"],
        run_dir=RunDir(Path(sys.argv[1])))

first = oracle()
first.new_trial()
size = max(f.stat().st_size for f in Path(sys.argv[1]).rglob("*.json"))
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
try:
    while True:
        first.new_trial()
except OSError as error:
    cut = error.errno
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
pending = oracle().reload(None)
print(json.dumps({"errno": cut, "pending": [t.trial_id for t in pending]}))
"""


def test_an_oracle_write_cut_short_leaves_the_previous_file_whole(tmp_path):
    """A file-size limit makes the kernel refuse a write midway (EFBIG), as a full disk
    would; written in place, the oracle's file would be left truncated."""
    out = subprocess.run(
        [sys.executable, "-c", ATOMIC_WRITES, tmp_path / "run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errno"] == errno.EFBIG
    assert report["pending"]  # the trials it had started, read back
    files = list((tmp_path / "run" / "oracle").rglob("*.json"))
    assert any(f.name == "oracle.json" for f in files)
    for file in files:
        json.loads(file.read_text())  # each one whole
        assert not file.name.startswith(".")  # no temporary file left behind


def fill(disk: Path) -> None:
    """Write a file on ``disk`` until not one more byte fits."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs of its own (mounting one needs root: skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", disk], check=True)


def test_a_full_disk_stops_the_search_with_one_line_and_resume_continues(image_folder, small_disk):
    run_dir = small_disk / "run"
    search = start("search", image_folder, "--out", run_dir, *SEARCH)
    try:
        assert wait_for(lambda: finished(run_dir), search)
        fill(small_disk)
        _, stderr = search.communicate(timeout=300)
    finally:
        search.kill()
    assert search.returncode == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"automl: error: the disk at {small_disk} is full")
    assert last.endswith(f"automl search --resume {run_dir}")
    done = finished(run_dir)
    assert done

    (small_disk / "filler").unlink()
    out = run_automl("search", "--resume", run_dir)
    assert out.returncode == 0, out.stderr
    assert_completed(run_dir, done)


def test_a_cache_disk_too_small_for_the_pixels_is_one_line_not_a_crash(tmp_path, small_disk):
    """The decoded pixels need 442 KB; 128 KiB are free: the cache's chunk file cannot be
    given its blocks, which is said in one line (no SIGBUS in a decoding process)."""
    folder = make_image_folder(tmp_path / "images", size=64)
    fill(small_disk)
    os.truncate(small_disk / "filler", (small_disk / "filler").stat().st_size - (128 << 10))
    out = run_automl(
        "search", folder, "--out", tmp_path / "run", *SEARCH,
        env={"AUTOML_CACHE_DIR": str(small_disk / "cache")},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "BrokenProcessPool" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert str(small_disk / "cache") in last and "no space left" in last.lower()
