"""Pretrained weights files: downloaded once from a real HTTP server on 127.0.0.1 (the
mirror setting points there), checked by hash or by loading, cached in a Keras cache of
the test's own, never fetched offline; ``automl weights list|fetch|import``."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import make_image_folder, run_automl

from automl_core.training.weights import WeightsFile, fetch, fetch_for_search
from automl_plugins import backbones

MNV2 = [file.name for file in backbones.weights_files("mobilenet_v2")]
"""The five files of mobilenet_v2 (one per image size); Keras publishes no hash for them."""
(MNV3,) = [file.name for file in backbones.weights_files("mobilenet_v3_small")]
"""mobilenet_v3_small's file; Keras publishes its md5."""
ONLINE = {"AUTOML_OFFLINE": ""}
"""The environment of a command that may download (the tests are offline by default)."""


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``root``, counting the GETs per file. Each
    answer waits a little, so that downloads starting together overlap."""
    root = tmp_path / "served"
    root.mkdir()
    requests = Counter()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests[self.path.lstrip("/")] += 1
            time.sleep(0.5)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", requests=requests)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> SimpleNamespace:
    """Randomly initialised backbones' weights, saved by the test itself: mobilenet_v2 in
    Keras's legacy HDF5 (as keras.applications publishes), mobilenet_v3_small in both."""
    import keras

    root = tmp_path_factory.mktemp("random_weights")
    keras.utils.set_random_seed(3)
    mnv2 = backbones.backbone_model("mobilenet_v2", 96)
    mnv2.save(root / "mnv2.h5")
    mnv3 = backbones.backbone_model("mobilenet_v3_small", 96)
    mnv3.save(root / "mnv3.h5")
    mnv3.save_weights(root / "mnv3.weights.h5")
    return SimpleNamespace(
        mnv2=root / "mnv2.h5",
        mnv3=root / "mnv3.h5",
        mnv3_weights=root / "mnv3.weights.h5",
        mnv3_values=mnv3.get_weights(),
    )


def models(tmp_path) -> Path:
    """The Keras cache's weights folder of this test (conftest sets ``KERAS_HOME``)."""
    return tmp_path / "keras" / "models"


def cached(tmp_path) -> list[str]:
    """The weights files in the cache: no lock file, no partial download."""
    folder = models(tmp_path)
    return sorted(p.name for p in folder.glob("*.h5") if not p.name.startswith(".")) + sorted(
        p.name for p in folder.glob(".partial-*")
    )


def automl_errors(out) -> list[str]:
    assert "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stderr.splitlines() if line.startswith("automl: error: ")]


def test_a_file_is_downloaded_once_from_the_mirror_with_its_hash_checked(server, tmp_path, capsys):
    payload = np.random.default_rng(0).bytes(300_000)
    (server.root / "blob.h5").write_bytes(payload)
    file = WeightsFile(
        "blob.h5",
        "https://published.invalid/blob.h5",
        hashlib.sha256(payload).hexdigest(),
        load=lambda path: pytest.fail("a file with a hash is not loaded to check it"),
    )
    path = fetch(file, mirror=server.url + "/")
    assert path == models(tmp_path) / "blob.h5"
    assert path.read_bytes() == payload
    out = capsys.readouterr().out
    assert f"Downloading data from {server.url}/blob.h5" in out
    assert "300000/300000" in out  # Keras's progress bar, finished
    assert fetch(file, mirror=server.url) == path  # cached: no second request
    assert server.requests == {"blob.h5": 1}


def test_a_download_another_process_holds_is_waited_for_not_repeated(server, tmp_path):
    (server.root / "w.h5").write_bytes(b"served")  # there, but it must not be requested
    target = models(tmp_path) / "w.h5"
    target.parent.mkdir(parents=True)
    script = (
        "import sys\n"
        "from automl_core.training.weights import WeightsFile, fetch\n"
        "print(fetch(WeightsFile('w.h5', sys.argv[1], None, load=print)))\n"
    )
    with open(target.parent / ".w.h5.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the test is the other process, downloading
        waiting = subprocess.Popen(
            [sys.executable, "-c", script, f"{server.url}/w.h5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr.readline() == "automl: waiting for another process to fetch w.h5\n"
        target.write_bytes(b"fetched by the other process")
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert out == f"{target}\n"
    assert target.read_bytes() == b"fetched by the other process"
    assert server.requests == {}


def test_a_search_warns_per_architecture_and_stops_trying_once_the_network_fails(
    server, tmp_path, capsys
):
    payload = b"weights"
    (server.root / "b.h5").write_bytes(payload)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"

    def declared(name, base):
        digest = hashlib.md5(payload).hexdigest()
        return (WeightsFile(f"{name}.h5", f"{base}/{name}.h5", digest, load=pytest.fail),)

    seconds = fetch_for_search(
        {
            "a": declared("a", server.url),  # the server has no such file: 404
            "b": declared("b", server.url),
            "c": declared("c", nowhere),  # nothing listens: the network failed
            "d": declared("d", server.url),  # so it is not tried
        },
        offline=False,
        mirror=None,
    )
    assert seconds > 0
    assert server.requests == {"a.h5": 1, "b.h5": 1}
    assert cached(tmp_path) == ["b.h5"]
    lines = capsys.readouterr().err.splitlines()
    warnings = {w.split(": ")[2]: w for w in lines if w.startswith("automl: warning: ")}
    assert list(warnings) == ["a", "c", "d"]
    assert "404" in warnings["a"] and "no network?" in warnings["c"]
    assert "(the network failed above, and 1 pretrained weights file not in" in warnings["d"]
    assert lines[-1].startswith("automl: 1 pretrained weights file ready (0.0 MB) in ")


def test_a_corrupt_download_is_one_line_and_nothing_is_cached(server, tmp_path, random_weights):
    shutil.copy(random_weights.mnv3, server.root / MNV3)  # not the published file: its md5 differs
    out = run_automl(
        "weights", "fetch", "mobilenet_v3_small", "--weights-mirror", server.url, env=ONLINE
    )
    assert out.returncode == 2
    (line,) = automl_errors(out)
    assert line.startswith(f"automl: error: {server.url}/{MNV3}: Incomplete or corrupted file")
    assert line.endswith("; nothing was cached")
    assert server.requests == {MNV3: 1}
    assert cached(tmp_path) == []


def test_offline_fetches_nothing(server, tmp_path):
    out = run_automl("weights", "fetch", "mobilenet_v2", "--weights-mirror", server.url)
    assert out.returncode == 2  # conftest sets AUTOML_OFFLINE=1
    assert automl_errors(out) == [
        "automl: error: offline (AUTOML_OFFLINE is set): nothing is downloaded; unset it"
    ]
    assert server.requests == {} and cached(tmp_path) == []


def test_weights_list_shows_every_file_its_size_and_whether_it_is_cached(tmp_path):
    models(tmp_path).mkdir(parents=True)
    (models(tmp_path) / "efficientnetb0_notop.h5").write_bytes(b"\0" * 2_500_000)
    out = run_automl("weights", "list", env={"AUTOML_WEIGHTS_MIRROR": "http://mirror.lan/w"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"Keras cache: {models(tmp_path)}"
    rows = [line.split() for line in lines[2:-1]]
    expected = [
        (name, file.name) for name in backbones.BACKBONES for file in backbones.weights_files(name)
    ]
    assert [(row[0], row[1]) for row in rows] == expected
    for row in rows:
        check = "loading" if row[0] == "mobilenet_v2" else "hash"
        if row[1] == "efficientnetb0_notop.h5":
            assert row[2:] == ["2.5", "MB", "yes", check]
        else:
            assert row[2:] == ["-", "no", check]
    assert lines[-1] == (
        "downloads from the mirror http://mirror.lan/w (AUTOML_WEIGHTS_MIRROR); "
        "offline (AUTOML_OFFLINE)"
    )


def test_weights_import_puts_a_fitting_file_in_place_and_refuses_another(tmp_path, random_weights):
    import keras

    wrong = run_automl("weights", "import", random_weights.mnv2, "--for", "mobilenet_v3_small")
    assert wrong.returncode == 2
    (line,) = automl_errors(wrong)
    assert line.startswith(f"automl: error: {random_weights.mnv2} does not fit the architecture (")
    assert cached(tmp_path) == []

    out = run_automl(
        "weights", "import", random_weights.mnv3_weights, "--for", "mobilenet_v3_small"
    )
    assert out.returncode == 0, out.stderr
    assert cached(tmp_path) == [MNV3]
    placed = models(tmp_path) / MNV3
    assert f"imported {random_weights.mnv3_weights} as {placed}" in out.stdout
    keras.utils.set_random_seed(4)  # another init: equal weights mean loaded
    loaded = backbones.backbone_model("mobilenet_v3_small", 128, "imagenet")
    for got, want in zip(loaded.get_weights(), random_weights.mnv3_values, strict=True):
        np.testing.assert_array_equal(got, want)


def search_args(folder, out, *flags) -> list:
    """A one-trial, one-epoch ``automl search`` of mobilenet_v2 (float32: no probe)."""
    return [
        *("search", folder, "--out", out, "--architectures", "mobilenet_v2"),
        *("--augmenters", "none", "--max-trials", "1", "--epochs", "1", "--no-refit", "-q"),
        *("--precision", "float32", *flags),
    ]


def trained_weights(run: Path) -> str:
    """The weights the search's one trial started from: ``imagenet`` or ``none``."""
    (trial,) = json.loads((run / "leaderboard.json").read_text())
    assert trial["architecture"] == "mobilenet_v2" and trial["status"] == "completed"
    (weights,) = [v for k, v in trial["hyperparameters"].items() if k.endswith("weights")]
    return weights


def automl_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("automl: warning")]


def test_an_offline_search_warns_once_per_backbone_and_trains_from_random_init(
    server, tmp_path, monkeypatch
):
    monkeypatch.delenv("AUTOML_OFFLINE")  # the flag, not the environment, says offline
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=6)
    run = tmp_path / "run"
    out = run_automl(*search_args(folder, run, "--offline", "--weights-mirror", server.url))
    assert out.returncode == 0, out.stderr
    assert automl_warnings(out.stderr) == [
        f"automl: warning: mobilenet_v2: no pretrained weights (offline, and 5 pretrained "
        f"weights files not in {models(tmp_path)}): training it from random init"
    ]
    assert server.requests == {} and cached(tmp_path) == []
    assert trained_weights(run) == "none"


def test_a_budgeted_search_on_small_data_does_not_screen_a_backbone_without_weights(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=6)
    run = tmp_path / "run"
    flags = ["--architectures", "baseline_cnn,mobilenet_v2", "--augmenters", "none"]
    flags += ["--time-budget", "30s", "--epochs", "1", "--precision", "float32", "-q"]
    out = run_automl("search", folder, "--out", run, "--offline", *flags)
    assert out.returncode == 0, out.stderr
    notes = json.loads((run / "state.json").read_text())["notes"]
    assert "mobilenet_v2: not screened (no pretrained weights)" in notes
    board = json.loads((run / "leaderboard.json").read_text())
    assert board and {trial["architecture"] for trial in board} == {"baseline_cnn"}


def test_two_searches_starting_together_download_each_file_once(server, tmp_path, random_weights):
    for name in MNV2:  # no-top weights fit every input size
        shutil.copy(random_weights.mnv2, server.root / name)
    folder = make_image_folder(tmp_path / "images", classes=("red", "blue"), per_class=6)
    env = {**os.environ, **ONLINE, "AUTOML_WEIGHTS_MIRROR": server.url}
    command = [sys.executable, "-m", "automl_core.cli"]
    searches = [
        subprocess.Popen(
            [*command, *search_args(folder, tmp_path / f"run{i}", "--executor", "inline")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [search.communicate(timeout=600) for search in searches]
    for search, (_, stderr) in zip(searches, outputs, strict=True):
        assert search.returncode == 0, stderr
        assert automl_warnings(stderr) == [], stderr
    assert server.requests == dict.fromkeys(MNV2, 1)
    assert cached(tmp_path) == sorted(MNV2)
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count(f"Downloading data from {server.url}/") == len(MNV2)
    stderr = "".join(err for _, err in outputs)
    assert "automl: mobilenet_v2: fetching 5 pretrained weights files" in stderr
    assert "before the search's clock started" in stderr
    assert [trained_weights(tmp_path / f"run{i}") for i in range(2)] == ["imagenet"] * 2
