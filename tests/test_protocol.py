"""The worker protocol on its own: events on a pipe, the trial folder, a process's outcome;
and the rule that only ``rundir.py`` names the files of a run directory."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from automl_core.execution.protocol import (
    Built,
    Epoch,
    Exited,
    decode,
    encode,
    outcome,
    prepare_trial_dir,
    read_events,
)
from automl_core.rundir import RunDir, TrialDir, WinnerDir
from automl_core.training.trial import COMPLETED, FAILED, TrialResult, TrialSpec

ROOT = Path(__file__).resolve().parent.parent
EVENTS = [
    Built({"space": [{"name": "units", "values": [8, 16]}], "values": {"note": "a\nb"}}),
    Epoch(3, {"loss": 0.5, "val_accuracy": 0.75}),
    Exited(-9, "Killed"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_an_event_is_one_line_and_decodes_to_itself(event):
    line = encode(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode(line) == event
    assert decode(line.encode()) == event  # as read from a binary pipe


@pytest.mark.parametrize(
    "line",
    [
        "Epoch 1/5 - loss: 0.3\n",  # a plugin printing to stdout
        "",
        "42",
        "null",
        "[1, 2]",
        '{"built": {}}',  # no event kind
        '{"event": "Reboot"}',  # a kind the protocol does not have
        '{"event": "Epoch", "epoch": 1}',  # a field missing
        '{"event": "Epoch", "epoch": 1, "logs": {}, "extra": 1}',  # a field too many
        b"\xff\xfe not utf-8",
    ],
)
def test_a_line_that_is_not_an_event_decodes_to_none(line):
    assert decode(line) is None


def spec_in(folder: Path, trial_id: str = "7") -> TrialSpec:
    trial_dir = RunDir(folder).trial(trial_id)
    return TrialSpec(trial_id, "arch", "none", {}, str(trial_dir), 2, 8, 1, 0, device="cpu:0")


def test_events_from_a_real_process_skip_stray_output_and_end_with_its_exit(tmp_path):
    trial = TrialDir(tmp_path)
    trial.log.write_text("loading\nValueError: broken candidate\n\n")
    script = (
        "import sys\n"
        "print('a stray line from a plugin')\n"
        f"sys.stdout.write({encode(EVENTS[0])!r})\n"
        "print('{not json')\n"
        f"sys.stdout.write({encode(EVENTS[1])!r})\n"
        "sys.exit(3)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    events = list(read_events(process, trial))
    assert events == [EVENTS[0], EVENTS[1], Exited(3, "ValueError: broken candidate")]


def test_a_rerun_starts_from_a_clean_trial_folder(tmp_path):
    spec = spec_in(tmp_path)
    trial = TrialDir(spec.trial_dir)
    trial.path.mkdir(parents=True)
    trial.metrics.write_text("{}")  # left by an interrupted attempt
    trial.stop.touch()
    prepare_trial_dir(spec)
    assert not trial.metrics.exists() and not trial.stop.exists()
    assert TrialSpec.load(trial) == spec


def test_a_process_that_saved_no_result_becomes_a_failed_trial(tmp_path):
    spec = spec_in(tmp_path)
    prepare_trial_dir(spec)
    killed = outcome(spec, Exited(-signal.SIGKILL, "epoch 2"), started_at=1.0)
    assert killed.status == FAILED and "SIGKILL" in killed.error and "out of memory" in killed.error
    assert TrialResult.load(TrialDir(spec.trial_dir)).error == killed.error  # saved

    TrialDir(spec.trial_dir).metrics.unlink()
    crashed = outcome(spec, Exited(2, "ImportError: no module named foo"), started_at=1.0)
    assert crashed.error == "trial process exited with code 2: ImportError: no module named foo"
    assert (crashed.device, crashed.started_at) == ("cpu:0", 1.0)


def test_a_process_that_saved_its_result_gives_that_result(tmp_path):
    spec = spec_in(tmp_path)
    prepare_trial_dir(spec)
    saved = TrialResult(spec.trial_id, "arch", "none", COMPLETED, val_accuracy=0.5)
    saved.history = {"loss": [1.0, 0.5]}
    saved.save(TrialDir(spec.trial_dir))
    result = outcome(spec, Exited(0, "done"), started_at=1.0)
    assert (result.status, result.val_accuracy, result.history) == (COMPLETED, 0.5, saved.history)


def run_dir_names() -> set[str]:
    """Every file and folder name the run directory's paths use, as ``rundir.py`` spells them."""
    run = RunDir(Path("run"))
    paths = [
        getattr(run, name) for name in dir(RunDir) if isinstance(getattr(RunDir, name), property)
    ]
    for folder, kind in ((run.trial("id"), TrialDir), (run.winner, WinnerDir)):
        paths += [
            getattr(folder, name) for name in dir(kind) if isinstance(getattr(kind, name), property)
        ]
    parts = {part for path in paths for part in Path(path).relative_to("run").parts} - {"id"}
    assert {"config.json", "trials", "metrics.json", "STOP", "winner.json"} <= parts
    return parts


def test_only_rundir_names_the_files_of_a_run_directory():
    """A name of the run directory written as a string anywhere but ``rundir.py`` is a
    second spelling that can drift. Dictionary keys are not paths (``"trials"`` in the
    report's JSON). Plain words (``data``, ``report``) are left out: they name commands too."""
    names = {n for n in run_dir_names() if "." in n or n in ("trials", "STOP")}
    allowed = {("plugins/exporters.py", "model.keras")}  # the keras format's own file name
    spelled = []
    for path in sorted([*ROOT.glob("automl_core/**/*.py"), *ROOT.glob("plugins/**/*.py")]):
        where = str(path.relative_to(ROOT))
        if where == "automl_core/rundir.py":
            continue
        tree = ast.parse(path.read_text())
        keys = {
            id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys
        }
        spelled += [
            f"{where}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and node.value in names
            and id(node) not in keys
            and (where, node.value) not in allowed
        ]
    assert spelled == [], "use RunDir / TrialDir / WinnerDir instead:\n" + "\n".join(spelled)


def test_status_words_are_the_trial_module_constants():
    """Trial statuses are compared through ``automl_core.training.trial``'s constants."""
    words = {"completed", "failed", "stopped", "running"}
    found = []
    for path in sorted([*ROOT.glob("automl_core/**/*.py"), *ROOT.glob("plugins/**/*.py")]):
        if path.name == "trial.py" and path.parent.name == "training":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                operands += [
                    e
                    for o in operands
                    if isinstance(o, ast.Tuple | ast.List | ast.Set)
                    for e in o.elts
                ]
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                    for o in operands
                    if isinstance(o, ast.Constant) and o.value in words
                ]
    assert found == [], found


def test_run_files_are_written_under_fresh_names_and_the_split_is_owner_only(tmp_path):
    from automl_core.data.dataset import DatasetSplit, save_split
    from automl_core.rundir import UMASK, atomic_target

    names = []
    for _ in range(2):
        with atomic_target(tmp_path / "state.json") as tmp:
            assert tmp.exists() and tmp.parent == tmp_path  # created, not just named
            names.append(tmp.name)
            tmp.write_text("{}")
    assert names[0] != names[1] and str(os.getpid()) not in names[0]
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp left
    pixels = np.zeros((2, 4, 4, 3), np.uint8)
    save_split(DatasetSplit(pixels, np.zeros(2), pixels, np.zeros(2), ["a"]), tmp_path / "data")
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "data").glob("*.npy")} == {0o600}
