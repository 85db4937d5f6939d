"""``--precision auto``: bfloat16 when a timed probe on this CPU finds it clearly faster."""

from __future__ import annotations

import json

from conftest import run_automl

from automl_core.rundir import RunDir
from automl_core.training.precision import (
    CACHE_FILE,
    CLEARLY_FASTER,
    machine_key,
    resolve_precision,
    training_policy,
)


def test_the_probe_measures_both_precisions_once_per_machine(tmp_path):
    choice = resolve_precision("auto", on_gpu=False, cache_dir=tmp_path, threads=1)
    found = choice.measurement
    assert found.float32 > 0 and found.bfloat16 > 0 and found.threads == 1
    assert choice.bfloat16_faster == (found.bfloat16 / found.float32 >= CLEARLY_FASTER)
    assert found.tensorflow and found.cpu
    cache = tmp_path / CACHE_FILE
    entry = json.loads(cache.read_text())[machine_key(1)]
    assert entry["measured_at"] == found.measured_at
    written = cache.stat().st_mtime_ns

    again = resolve_precision("auto", on_gpu=False, cache_dir=tmp_path, threads=1)
    assert again.measurement == found  # the cached figures, not a second probe
    assert cache.stat().st_mtime_ns == written
    assert "x float32 on this CPU" in again.summary()

    cache.write_text('{"half a file')
    remeasured = resolve_precision("auto", on_gpu=False, cache_dir=tmp_path, threads=1)
    assert remeasured.measurement.measured_at > found.measured_at
    assert json.loads(cache.read_text())[machine_key(1)]["measured_at"] == (
        remeasured.measurement.measured_at
    )


def test_forced_precisions_and_gpus_never_probe(tmp_path):
    for requested, on_gpu, declared in [
        ("float32", False, True),
        ("mixed", False, True),
        ("auto", True, True),
        ("auto", False, False),  # no architecture may train in mixed precision
    ]:
        choice = resolve_precision(requested, on_gpu=on_gpu, cache_dir=tmp_path, declared=declared)
        assert choice.measurement is None and not choice.bfloat16_faster
    assert not (tmp_path / CACHE_FILE).exists()
    assert resolve_precision("float32", on_gpu=False, cache_dir=tmp_path).summary() == (
        "float32 (--precision float32)"
    )


def test_policy_float16_on_gpus_bfloat16_on_cpus_where_measured_faster():
    for on_gpu in (True, False):
        for declared in (True, False):
            for faster in (True, False):
                flags = {"on_gpu": on_gpu, "declared": declared, "bfloat16_faster": faster}
                assert training_policy("float32", **flags) is None
                mixed = training_policy("mixed", **flags)
                assert mixed == ("mixed_float16" if on_gpu else "mixed_bfloat16")
                auto = training_policy("auto", **flags)
                assert auto == ("mixed_bfloat16" if faster and declared and not on_gpu else None)


def test_a_search_records_its_precision_and_the_card_tells(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    done = run_automl(
        "search", image_folder, "--out", run_dir, "--architectures", "baseline_cnn",
        "--augmenters", "none", "--max-trials", "1", "--epochs", "1", "--no-refit",
        "--workers", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(RunDir(run_dir).precision.read_text())
    assert record["requested"] == "auto" and record["measurement"]["float32"] > 0
    policy = "mixed_bfloat16" if record["bfloat16_faster"] else "float32"
    assert record["architectures"] == {"baseline_cnn": policy}
    assert f"precision: {record['summary']}" in " ".join(done.stdout.split())  # unwrapped
    card = json.loads((run_dir / "winner" / "model_card.json").read_text())
    assert card["training_precision"] == {"policy": policy, "reason": record["summary"]}
    trained = policy.removeprefix("mixed_")
    assert f"- Trained in {trained} (" in (run_dir / "winner" / "model_card.md").read_text()
