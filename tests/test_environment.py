"""Reproducible runs (issue 16, point 8): ``environment.json`` records the run schema and
what a search ran with, the model card shows it, a resume on other versions says so, and
a run written under another schema is reported as far as it can be, never resumed."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import make_image_folder, quick_search, run_automl
from test_bad_input import error_line

from automl_core.engine.environment import AUTOML, LIBRARIES
from automl_core.rundir import RUN_SCHEMA, RunDir, read_json, write_json

BROKEN_CONFIGS = {
    "truncated": ('{"source": "images", "max_tri', "is unreadable"),
    "not-an-object": ("[]", "not a JSON object"),
    "unknown-setting": (
        '{"source": "images", "colour": 1}',
        "unexpected keyword argument 'colour'",
    ),
}
"""``config.json`` texts ``--resume`` cannot use, and what its error line says."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> RunDir:
    """One finished one-trial search (read it; ``copy`` it before changing anything)."""
    root = tmp_path_factory.mktemp("environment")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOML_CACHE_DIR", str(root / "cache"))
        run = quick_search(
            make_image_folder(root / "images"),
            root / "run",
            max_trials=1,
            epochs=1,
            precision="float32",
        )
    return run.run_dir


@pytest.fixture
def copy(finished, tmp_path) -> RunDir:
    return RunDir(shutil.copytree(finished.path, tmp_path / "run", symlinks=True))


def test_a_search_records_its_environment_and_the_card_shows_it(finished):
    recorded = read_json(finished.environment)
    expected = {name: metadata.version(name) for name in (AUTOML, *LIBRARIES)}
    assert recorded["schema"] == RUN_SCHEMA
    assert recorded["versions"] == expected | {"python": platform.python_version()}
    assert recorded["platform"] == platform.platform()
    assert recorded["precision"] == read_json(finished.precision)["summary"]
    assert recorded["precision"].startswith("float32")
    assert recorded["cpu"]["model"] and recorded["cpu"]["cores"] >= 1
    assert recorded["gpus"] == [] and recorded["resumes"] == []

    card = read_json(finished.winner.card_json)["reproducibility"]
    assert card["versions"] == recorded["versions"] and card["changed_on_resume"] == []
    text = finished.winner.card_md.read_text()
    section = text[text.index("## Reproducibility") :]
    for name, version in expected.items():
        assert f"{name} {version}" in section
    assert f"Python {platform.python_version()}" in section
    assert f"Run schema {RUN_SCHEMA}" in section and "GPUs: none" in section


def test_the_report_shows_the_environment(copy):
    recorded = read_json(copy.environment)
    recorded["resumes"] = [recorded | {"changes": ["keras 9.0 (was 3.15)"]}]
    write_json(copy.environment, recorded)
    shown = run_automl("report", copy.path, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["environment"]["versions"] == recorded["versions"]
    assert run_automl("report", copy.path).returncode == 0
    page = copy.report_index.read_text()
    section = page[page.index("<h2>Environment</h2>") :]
    assert f"<td>{recorded['versions']['tensorflow']}</td>" in section
    assert f"<td>{recorded['cpu']['model']}</td>" in section
    assert "<th>resume 1</th><td>keras 9.0 (was 3.15)</td>" in section


def test_recording_the_versions_imports_no_tensorflow(tmp_path):
    script = (
        "import sys\n"
        "from automl_core.engine.environment import environment\n"
        "from automl_core.engine.run import SearchRun\n"
        "from automl_core.engine.settings import SearchConfig\n"
        "from automl_core.rundir import RunDir\n"
        "from automl_core.training.precision import PrecisionChoice\n"
        f"run = SearchRun(SearchConfig('x'), RunDir({str(tmp_path)!r}), None, [], [])\n"
        "facts = environment(run, PrecisionChoice('float32', on_gpu=False))\n"
        "print(facts['versions']['tensorflow'], 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [metadata.version("tensorflow"), "False"]


def test_report_on_another_schema_says_so_and_shows_the_run(copy):
    write_json(copy.environment, read_json(copy.environment) | {"schema": 999})
    out = run_automl("report", copy.path, "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"automl: warning: {str(copy.path)!r} was written by schema 999; this automl reads "
        f"schema {RUN_SCHEMA}: showing what it can"
    ]
    assert [t["status"] for t in json.loads(out.stdout)["trials"]] == ["completed"]

    copy.environment.unlink()
    out = run_automl("report", copy.path, "--csv")
    assert out.returncode == 0, out.stderr
    assert "records no run schema" in out.stderr and len(out.stdout.splitlines()) == 2


def test_report_on_another_schema_it_cannot_read_is_one_line(copy):
    write_json(copy.environment, read_json(copy.environment) | {"schema": 999})
    write_json(copy.trial_dirs()[0].metrics, {"a_field_of_schema_999": 1})
    line = error_line(run_automl("report", copy.path))
    assert "was written by schema 999" in line and "cannot read it" in line


@pytest.mark.parametrize("recorded", [{"schema": 999}, None], ids=["schema-999", "no-schema"])
def test_resume_refuses_another_schema_in_one_line(copy, recorded):
    if recorded is None:
        copy.environment.unlink()
    else:
        write_json(copy.environment, read_json(copy.environment) | recorded)
    before = sorted(p.name for p in copy.path.iterdir())
    line = error_line(run_automl("search", "--resume", copy.path, "--max-trials", "2"))
    assert "cannot resume it" in line
    assert ("was written by schema 999" if recorded else "records no run schema") in line
    assert sorted(p.name for p in copy.path.iterdir()) == before
    assert len(copy.trial_dirs()) == 1


@pytest.mark.parametrize("config, problem", BROKEN_CONFIGS.values(), ids=BROKEN_CONFIGS)
def test_resume_with_a_broken_config_is_one_line(copy, config, problem):
    copy.config.write_text(config)
    line = error_line(run_automl("search", "--resume", copy.path))
    assert str(copy.config) in line and problem in line


def test_resume_on_other_versions_warns_and_records_both(copy, capsys):
    from automl_core.engine.search import resume

    started = read_json(copy.environment)
    started["versions"]["tensorflow"] = "0.0.1"
    write_json(copy.environment, started)
    resume(copy.path)
    tensorflow = metadata.version("tensorflow")
    assert f"resumed with tensorflow {tensorflow} (was 0.0.1)" in capsys.readouterr().err
    recorded = read_json(copy.environment)
    assert recorded["versions"]["tensorflow"] == "0.0.1"  # the start is kept
    assert [r["changes"] for r in recorded["resumes"]] == [[f"tensorflow {tensorflow} (was 0.0.1)"]]
    card = copy.winner.card_md.read_text()
    assert f"Changed on resume: tensorflow {tensorflow} (was 0.0.1)" in card
