"""The console: TensorFlow's start-up notices hidden, plain lines unwrapped, a compact
leaderboard, epoch lines on request, the help in order, documented and naming what is
registered; and the learning curves of continued trials."""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import make_image_folder, quick_search, run_automl

from automl_core.cli.main import COMMAND_ORDER, build_parser
from automl_core.plugin.manager import load_plugins
from automl_core.reporting.plots import LEARNING_CURVES, curve, write_plots
from automl_core.reporting.run_report import load_report
from automl_core.training.runtime import DEBUG_ENV, STARTUP_NOTICE

NOTICES = [  # as TensorFlow 2.21 writes them on a machine without a GPU
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796252024.907181   29226 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796252024.907807   29226 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796252120.132942   29226 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
EPOCH_LINE = re.compile(r"^trial \S+ epoch \d+/\d+:", re.MULTILINE)


def notices_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if STARTUP_NOTICE.match(line.encode())]


def test_start_up_notices_are_hidden_and_every_other_line_kept():
    code = textwrap.dedent(f"""
        import os, sys
        from automl_core.training.runtime import startup_notices_hidden
        with startup_notices_hidden():
            for line in {NOTICES!r}:
                os.write(2, line.encode() + b"\\n")
            os.write(2, b"E0000 00:00:1.5   7 session.cc:12] a real error\\n")
            print("a Python warning", file=sys.stderr)
        print("after", file=sys.stderr)
        """)
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    run = [sys.executable, "-c", code]
    quiet = subprocess.run(run, capture_output=True, text=True, env=env)
    assert quiet.stderr.splitlines() == [
        "E0000 00:00:1.5   7 session.cc:12] a real error",
        "a Python warning",
        "after",
    ]
    shown = subprocess.run(run, capture_output=True, text=True, env=env | {DEBUG_ENV: "1"})
    assert shown.stderr.splitlines()[: len(NOTICES)] == NOTICES


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """Two searches with stdout and stderr piped: a plain one, and one with --debug
    --verbose; and whether importing TensorFlow here prints start-up notices at all."""
    root = tmp_path_factory.mktemp("console")
    images = make_image_folder(root / "images")
    cache = root / "cache"
    shared = tmp_path_factory.getbasetemp().parent / "precision.json"  # see conftest.py
    if shared.exists():
        cache.mkdir()
        shutil.copy(shared, cache / "precision.json")
    env = {"AUTOML_CACHE_DIR": str(cache)}
    common = ["--architectures", "baseline_cnn", "--epochs", "2", "--no-refit"]
    plain = run_automl(
        "search", images, *common, "--augmenters", "none,basic", "--max-trials", "2",
        "--out", root / "plain", env=env,
    )  # fmt: skip
    loud = run_automl(
        "search", images, *common, "--augmenters", "none", "--max-trials", "1",
        "--out", root / "loud", "--debug", "--verbose", env=env,
    )  # fmt: skip
    bare = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
        capture_output=True,
        text=True,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return {"root": root, "plain": plain, "loud": loud, "notices": notices_in(bare.stderr)}


def test_a_piped_search_prints_no_start_up_notice_and_no_epoch_lines(piped):
    out = piped["plain"]
    assert out.returncode == 0, out.stderr
    assert notices_in(out.stderr) == notices_in(out.stdout) == []
    assert not EPOCH_LINE.search(out.stdout)
    lines = out.stdout.splitlines()
    assert sum(line.startswith("trial ") and " started: " in line for line in lines) == 2
    # a sentence is one line, however long: not wrapped at 80 columns
    assert any(line.startswith("candidates: ") and "run directory" in line for line in lines)


def test_the_leaderboard_is_a_line_per_trial_within_100_columns(piped):
    lines = piped["plain"].stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Leaderboard"))
    end = next(i for i, line in enumerate(lines) if line.startswith("winner saved to"))
    table = [line for line in lines[start:end] if line.strip()]
    assert max(map(len, table)) <= 100
    header = table[1].split()
    assert header[:4] == ["#", "trial", "architecture", "augmenter"]
    assert {"val_acc", "TTA", "epochs", "time", "params"} <= set(header)
    rows = [row.split() for row in table[3:]]
    assert [row[0] for row in rows] == ["1", "2"] and {row[1] for row in rows} == {"0", "1"}
    assert not any("learning_rate" in line for line in lines)  # that is automl report's


def test_long_names_folds_and_another_objective_still_fit_100_columns():
    """Only the names give way: every score, the fold mean and the rank stay whole."""
    from rich.console import Console

    from automl_core.reporting.live import PLAIN_WIDTH, leaderboard_table
    from automl_core.training.trial import TrialResult

    results = [
        TrialResult(
            f"{i:04d}",
            "mobilenet_v3_large_embedding",
            "flip_crop_cutout",
            "completed",
            {},
            val_accuracy=0.95,
            balanced_accuracy=0.9,
            macro_f1=0.875,
            val_accuracy_tta=0.96,
            params=2_300_000,
            train_seconds=53,
            epochs_run=100,
            folds={"scores": [0.9, 0.95], "mean": 0.925, "spread": 0.035},
        )
        for i in range(12)
    ]
    console = Console(width=PLAIN_WIDTH, soft_wrap=True, file=io.StringIO())
    console.print(leaderboard_table(results, "balanced_accuracy", hyperparameters=False))
    lines = console.file.getvalue().splitlines()
    assert max(map(len, lines)) <= PLAIN_WIDTH
    header = "# trial architecture augmenter bal_acc fold mean val_acc macro-F1 TTA epochs time"
    assert lines[1].split() == [*header.split(), "params"]
    last = lines[-1].split()
    assert last[:2] == ["12", "0011"] and last[2].startswith("mobilenet_v3_")
    assert last[4:] == ["0.900", "0.925±0.035", "0.950", "0.875", "0.960", "100", "0m53s", "2.3M"]


def test_debug_and_verbose_show_the_notices_and_every_epoch(piped):
    out = piped["loud"]
    assert out.returncode == 0, out.stderr
    if piped["notices"]:  # TensorFlow prints some on this machine
        assert notices_in(out.stderr)
    assert EPOCH_LINE.findall(out.stdout) == ["trial 0 epoch 1/2:", "trial 0 epoch 2/2:"]


def test_the_model_card_lists_images_per_class_as_a_table(piped):
    card = (piped["root"] / "plain" / "winner" / "model_card.md").read_text()
    assert "| class | images |" in card
    assert "| red | 12 |" in card and "| blue | 12 |" in card
    assert "{'" not in card


def test_automl_report_keeps_the_hyperparameters(piped):
    out = run_automl("report", piped["root"] / "plain")
    assert out.returncode == 0, out.stderr
    assert "Hyperparameters" in out.stdout and "learning_rate=" in out.stdout


def help_lines(*args: str) -> list[str]:
    out = run_automl(*args, "--help")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_help_lists_the_commands_in_the_order_people_use_them(tmp_path):
    plugin = tmp_path / "hello.py"
    plugin.write_text(
        "from automl_core import hookimpl\n\n"
        "@hookimpl\n"
        "def register_commands(subcommands):\n"
        "    subcommands.add_parser('hello', help='say hello')\n"
    )
    lines = help_lines("-p", plugin)
    commands = [line.split()[0] for line in lines if re.match(r"^    \w", line)]
    assert commands[: len(COMMAND_ORDER)] == list(COMMAND_ORDER)
    assert commands[-1] == "hello"


def all_parsers(plugins) -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(plugins)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"automl": parser} | dict(commands.choices)


def test_every_option_and_argument_has_help():
    for name, parser in all_parsers(load_plugins()).items():
        for action in parser._actions:
            assert action.help and action.help.strip(), (name, action.option_strings or action.dest)
        assert parser.format_help()


def test_options_that_name_components_list_the_registered_names(tmp_path):
    plugin = tmp_path / "more.py"
    plugin.write_text(
        "from automl_core import hookimpl\n\n"
        "@hookimpl\n"
        "def register_architectures(register):\n"
        "    register('my_net', lambda hp, input_shape, classes: None)\n"
    )
    plugins = load_plugins([str(plugin)])
    text = all_parsers(plugins)["search"].format_help().replace("\n", " ")
    text = re.sub(r"\s+", " ", text)
    for option, kind in [
        ("--dataset", "datasets"),
        ("--architectures", "architectures"),
        ("--augmenters", "augmenters"),
        ("--tuner", "tuners"),
        ("--executor", "executors"),
        ("--export", "exporters"),
    ]:
        names = ", ".join(plugins[kind].names())
        assert f"registered: {names} (default:" in text, option
    assert "my_net" in plugins["architectures"].names()  # a -p plugin's names are listed too


def test_a_continued_trials_learning_curve_goes_on_from_its_parents(image_folder, tmp_path):
    # hyperband at 3 epochs: three 1-epoch trials, then the best trained on to epoch 3
    run = quick_search(image_folder, tmp_path / "run", tuner="hyperband", epochs=3, max_trials=4)
    report = load_report(run.run_dir.path)
    by_id = {t.trial_id: t for t in report.trials}
    continued = [t for t in report.trials if t.initial_epoch > 0]
    assert continued, "hyperband trained no trial further"
    for trial in continued:
        parent = by_id[trial.hp_config["values"]["tuner/trial_id"]]
        epochs, values = curve(trial, "val_accuracy", by_id)
        assert epochs == list(range(trial.initial_epoch, trial.epochs_run + 1))
        assert values == [parent.history["val_accuracy"][-1], *trial.history["val_accuracy"]]
    fresh = next(t for t in report.trials if t.initial_epoch == 0)
    assert curve(fresh, "val_loss", by_id)[0] == [1]
    assert LEARNING_CURVES in {p.name for p in write_plots(report, tmp_path).values()}
