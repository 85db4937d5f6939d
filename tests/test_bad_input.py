"""What a user sees when the input is bad (issue 15): one line naming the file and what to
do, exit code 2, no traceback; names are shown as they are, never as markup or formulas;
``--out`` never overwrites the user's files; resuming another user's run warns first.

Every case runs the real CLI in a subprocess on real files.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import make_image_folder, run_automl

from automl_core.engine.settings import SearchConfig
from automl_core.reporting.plots import CONFUSION_MATRIX
from automl_core.rundir import RUN_SCHEMA, RunDir, write_json

QUICK = ("--max-trials", "1", "--epochs", "1", "--architectures", "baseline_cnn")
QUICK += ("--augmenters", "none")
ODD_NAMES = {"red": "[bold]cat", "green": "dog [red]", "blue": "[/x]", "grey": "a$\\frac$c"}
"""Image folders and the labels a CSV gives them: rich markup, and a mathtext formula."""
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
PR_CAPBSET_DROP = 24


def error_line(out) -> str:
    """The one ``automl: error:`` line of a command that failed on bad input."""
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("automl: error: ")]
    assert len(errors) == 1, out.stderr
    return errors[0]


def decoded_nothing(cache: Path) -> bool:
    """No image was decoded: the cache holds at most the shared precision probe."""
    return all(p.name == "precision.json" for p in cache.rglob("*") if p.is_file())


def write_csv(path: Path, rows: list[tuple[str, str]], encoding: str = "utf-8") -> Path:
    lines = ["path,label", *(f"{file},{label}" for file, label in rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def drop_root_file_access() -> None:
    """In the child, before ``exec``: take away root's right to read any file, so that
    file permissions apply to it as to everyone else."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_class_folder(tmp_path, isolated_cache):
    images = make_image_folder(tmp_path / "images", per_class=2)
    (images / "red").chmod(0)
    as_root = os.geteuid() == 0
    try:
        out = run_automl(
            "search", images, *QUICK, preexec_fn=drop_root_file_access if as_root else None
        )
    except subprocess.SubprocessError as error:  # the child could not give up root's access
        pytest.skip(f"root cannot be denied a read here: {error}")
    finally:
        (images / "red").chmod(0o755)
    line = error_line(out)
    assert str(images / "red") in line and "permission denied" in line
    assert "chmod" in line
    assert decoded_nothing(isolated_cache)


def test_latin1_csv(tmp_path):
    make_image_folder(tmp_path / "images", per_class=2)
    rows = [("images/red/000.jpg", "café"), ("images/green/001.png", "thé")]
    labels = write_csv(tmp_path / "labels.csv", rows, encoding="latin-1")
    line = error_line(run_automl("search", labels, *QUICK))
    assert repr(str(labels)) in line
    assert "not UTF-8 text" in line and "save it as UTF-8" in line


def test_markup_label_in_inspect(tmp_path):
    make_image_folder(tmp_path / "images", per_class=2)
    rows = [("images/red/000.jpg", "[/x]"), ("images/green/001.png", "[bold]cat")]
    out = run_automl("inspect", write_csv(tmp_path / "labels.csv", rows))
    assert out.returncode == 0, out.stderr
    assert "[/x]" in out.stdout and "[bold]cat" in out.stdout


def test_class_names_shown_literally_in_search_and_report(tmp_path):
    make_image_folder(tmp_path / "images", classes=tuple(ODD_NAMES), per_class=8)
    rows = [
        (f"images/{folder}/{file.name}", label)
        for folder, label in ODD_NAMES.items()
        for file in sorted((tmp_path / "images" / folder).iterdir())
    ]
    labels = write_csv(tmp_path / "labels.csv", rows)
    run_dir = RunDir(tmp_path / "run")
    out = run_automl("search", labels, *QUICK, "--out", run_dir.path)
    assert out.returncode == 0, out.stderr
    for label in ODD_NAMES.values():
        assert label in out.stdout
    assert "report not written" not in out.stderr

    shutil.rmtree(run_dir.report)  # drawn again by the command, `$` in the plots' labels
    out = run_automl("report", run_dir.path)
    assert out.returncode == 0, out.stderr
    assert run_dir.report_index.is_file()
    assert (run_dir.report / CONFUSION_MATRIX).is_file()


def test_file_name_that_is_not_utf8(tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=4)
    red = os.fsencode(images / "red")
    os.rename(red + b"/000.jpg", red + b"/\xff.jpg")
    out = run_automl("search", images, *QUICK, "--out", tmp_path / "run")
    assert "Traceback" not in out.stderr, out.stderr
    if out.returncode == 2:  # refused: the line names the file, escaped
        assert "\\udcff.jpg" in error_line(out)
    else:  # or searched, with the file trained on or listed as skipped
        assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("case", ["file", "non-empty folder", "inside the dataset"])
def test_out_that_would_overwrite_is_refused_before_decoding(tmp_path, isolated_cache, case):
    images = make_image_folder(tmp_path / "images", per_class=2)
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("my work")
    out_dir = {
        "file": mine / "thesis.tex",
        "non-empty folder": mine,
        "inside the dataset": images / "runs" / "first",
    }[case]
    line = error_line(run_automl("search", images, *QUICK, "--out", out_dir))
    assert repr(str(out_dir)) in line
    assert (mine / "thesis.tex").read_text() == "my work"
    assert not (images / "runs").exists() and not (mine / "config.json").exists()
    assert decoded_nothing(isolated_cache)


def test_resume_of_another_users_run_warns_before_importing_its_plugins(tmp_path):
    plugin = tmp_path / "announce.py"
    plugin.write_text("import sys\n\nprint('announce plugin imported', file=sys.stderr)\n")
    run_dir = RunDir(tmp_path / "run")
    config = SearchConfig(str(make_image_folder(tmp_path / "images")), plugins=[str(plugin)])
    write_json(run_dir.config, asdict(config))
    write_json(run_dir.environment, {"schema": RUN_SCHEMA})

    mine = run_automl("search", "--resume", run_dir.path)
    assert "announce plugin imported" in mine.stderr, mine.stderr
    assert "another user" not in mine.stderr

    if os.geteuid() != 0:
        pytest.skip("giving a run directory to another user needs root")
    for path in (run_dir.path, run_dir.config):
        os.chown(path, 12345, 12345)
    theirs = run_automl("search", "--resume", run_dir.path).stderr
    warning = theirs.index("automl: warning:")
    assert "belongs to another user (uid 12345)" in theirs and str(plugin) in theirs
    assert warning < theirs.index("announce plugin imported")
