"""Faults at random moments: SIGKILL and --resume, two searches on one folder, a full disk.

The real CLI on a tiny made-up image folder (tests/conftest.py's), with the test plugin's
small architecture: searches of 4 trials of 2 epochs (tests/test_faults.py's settings).

- ``--kills N`` (default 20) kill-and-resume cycles: each search, and each ``--resume`` of
  it, is sent SIGKILL after a random delay (up to one uninterrupted search's wall time);
  a search that ends before its kill is checked and replaced by a new one.
- Two searches on one folder at once, sharing a fresh image cache.
- A full disk (a 64 MiB tmpfs, filled once the first trial has finished; needs root),
  then ``--resume`` once the space is freed.

Prints the CPU, then trials finished, trials lost (a trial that had finished before a
kill but is not in the final leaderboard: must be 0), trials trained twice (a finished
trial whose result was written again: must be 0), and the wall-time cost of resuming:
the searches' wall time with kills, minus as many uninterrupted searches, per resume
(it includes training again the trials the kills cut short).

    python benchmarks/faults.py [--kills 20] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import make_image_folder
from test_faults import MAX_TRIALS, SEARCH, fill, finished, kill, start


@dataclass
class Tally:
    """What the fault runs left behind."""

    finished: int = 0
    lost: int = 0
    twice: int = 0
    incomplete: list[str] = field(default_factory=list)
    """Searches that did not end with all their trials: why."""

    def check(self, run_dir: Path, done: dict[str, float], code: int, stderr: str) -> None:
        """Count a search that was left to end: ``done`` are the trials that had finished
        before its faults, with when each started."""
        board = run_dir / "leaderboard.json"
        rows = {r["trial_id"]: r for r in json.loads(board.read_text())} if board.exists() else {}
        completed = {t: r["started_at"] for t, r in rows.items() if r["status"] == "completed"}
        now = finished(run_dir)
        self.finished += len(completed)
        self.lost += sum(t not in completed for t in done)
        self.twice += sum(now.get(t, s) != s for t, s in done.items())
        if code != 0 or len(completed) < MAX_TRIALS:
            last = stderr.strip().splitlines()[-1:] or ["no output"]
            self.incomplete.append(
                f"{run_dir.name}: exit {code}, {len(completed)} trials: {last[0]}"
            )


def timed(command: list) -> tuple[float, int, str]:
    """Run the CLI to its end: wall seconds, exit code, stderr."""
    began = time.monotonic()
    search = start(*command)
    _, stderr = search.communicate()
    return time.monotonic() - began, search.returncode, stderr


def kill_cycles(folder: Path, work: Path, kills: int, rng: random.Random) -> None:
    for name in ("warm-up", "reference"):  # the first one decodes the images into the cache
        reference, code, stderr = timed(["search", folder, "--out", work / name, *SEARCH])
        assert code == 0, stderr
    print(f"one uninterrupted search: {reference:.1f} s")
    tally, walls, resumes, runs = Tally(), 0.0, 0, 0
    while kills > 0:
        runs += 1
        run_dir = work / f"killed-{runs}"
        command, done = ["search", folder, "--out", run_dir, *SEARCH], {}
        while True:
            began = time.monotonic()
            search = start(*command)
            try:
                moment = rng.uniform(0.0, reference) if kills > 0 else None  # last: to its end
                _, stderr = search.communicate(timeout=moment)
            except subprocess.TimeoutExpired:
                walls += time.monotonic() - began
                kill(search)  # at a random moment: starting, training, writing, between
                kills, resumes = kills - 1, resumes + 1
                done |= finished(run_dir)
                if (run_dir / "config.json").exists():
                    command = ["search", "--resume", run_dir]
                else:  # killed before the search had saved its settings: start it again
                    shutil.rmtree(run_dir, ignore_errors=True)
                continue
            walls += time.monotonic() - began
            tally.check(run_dir, done, search.returncode, stderr)
            break
    print(f"{resumes} kills at random moments in {runs} searches, each resumed:")
    print(f"  trials finished: {tally.finished}")
    print(f"  trials lost: {tally.lost} (must be 0)")
    print(f"  trials trained twice: {tally.twice} (must be 0)")
    print(f"  searches not completed: {tally.incomplete or 0}")
    cost = (walls - runs * reference) / max(resumes, 1)
    print(f"  cost of resuming: {cost:.1f} s per kill ({walls:.0f} s for {runs} searches)")


def two_at_once(work: Path) -> None:
    """Two searches on one new folder at the same moment: one image cache, two writers."""
    folder = make_image_folder(work / "shared-images", seed=7)
    runs = [work / "together-a", work / "together-b"]
    searches = [start("search", folder, "--out", r, *SEARCH) for r in runs]
    tally = Tally()
    for run_dir, search in zip(runs, searches, strict=True):
        _, stderr = search.communicate()
        tally.check(run_dir, {}, search.returncode, stderr)
    print("two searches on one folder at once:")
    print(f"  trials finished: {tally.finished} of {2 * MAX_TRIALS}")
    print(f"  searches not completed: {tally.incomplete or 0}")


def full_disk(folder: Path, work: Path) -> None:
    disk = work / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk]).returncode:
        print("a full disk: skipped (mounting a tmpfs needs root)")
        return
    try:
        run_dir = disk / "run"
        search = start("search", folder, "--out", run_dir, *SEARCH)
        while not finished(run_dir) and search.poll() is None:
            time.sleep(0.05)
        fill(disk)
        _, stderr = search.communicate()
        done = finished(run_dir)
        print("a full disk:")
        print(f"  exit code {search.returncode}; stderr's last line:")
        print(f"    {(stderr.strip().splitlines() or ['(none)'])[-1]}")
        print(f"  trials finished before it: {len(done)}")
        (disk / "filler").unlink()
        wall, code, stderr = timed(["search", "--resume", run_dir])
        tally = Tally()
        tally.check(run_dir, done, code, stderr)
        print(f"  after --resume ({wall:.1f} s): exit {code}")
        print(f"  trials finished: {tally.finished}, lost: {tally.lost}, twice: {tally.twice}")
    finally:
        subprocess.run(["umount", "-l", disk], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill-and-resume cycles")
    parser.add_argument("--seed", type=int, default=0, help="for the random kill moments")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs")
    args = parser.parse_args()
    from automl_core.training.precision import cpu_has_bfloat16_matrix_units, cpu_info

    print(f"CPU: {cpu_info()[0]}; AMX: {'yes' if cpu_has_bfloat16_matrix_units() else 'no'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="automl-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOML_CACHE_DIR"] = str(work / "cache")  # never the user's cache
    try:
        folder = make_image_folder(work / "images")
        kill_cycles(folder, work, args.kills, random.Random(args.seed))
        two_at_once(work)
        full_disk(folder, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
