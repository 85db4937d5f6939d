"""What a search ran with, so that it can be reproduced: ``environment.json``.

Written when a search starts, before ``config.json`` (every run that can be resumed has
it): the run directory's schema version (``RUN_SCHEMA``), the versions of automl, the
libraries trials train with and Python, the platform, the CPU, the GPUs the search uses
and the precision it trains in. Versions come from package metadata, so recording them
imports nothing. A resume appends what it runs with, and warns when that changed.
"""

from __future__ import annotations

import os
import platform
import sys
import time

from automl_core import __version__
from automl_core.engine.run import SearchRun
from automl_core.execution.devices import gpu_names, plan_slots
from automl_core.rundir import RUN_SCHEMA, environment_facts, read_json, write_json
from automl_core.training.precision import (
    PrecisionChoice,
    cpu_has_bfloat16_matrix_units,
    cpu_info,
    installed_version,
)

AUTOML = "automl-images"
LIBRARIES = ("tensorflow", "keras", "keras-tuner", "numpy")
"""Distributions whose versions are recorded, besides automl's own and Python's."""


def environment(run: SearchRun, precision: PrecisionChoice) -> dict:
    """What this search runs with, JSON-ready: versions, platform, CPU, GPUs, precision."""
    model, flags = cpu_info()
    slots = plan_slots(run.config.devices, run.config.workers)
    gpus = dict.fromkeys(slot.env["CUDA_VISIBLE_DEVICES"] for slot in slots if slot.is_gpu)
    return {
        "versions": {AUTOML: __version__}
        | {name: installed_version(name) for name in LIBRARIES}
        | {"python": platform.python_version()},
        "platform": platform.platform(),
        "cpu": {
            "model": model,
            "cores": os.cpu_count(),
            "amx": cpu_has_bfloat16_matrix_units(),
            "avx512_bf16": "avx512_bf16" in flags,
        },
        "gpus": gpu_names(list(gpus)),
        "precision": precision.summary(),
        "recorded_at": time.time(),
    }


def record_start(run: SearchRun, precision: PrecisionChoice) -> None:
    """Write ``environment.json`` for a new search."""
    now = environment(run, precision)
    write_json(run.run_dir.environment, {"schema": RUN_SCHEMA} | now | {"resumes": []})


def record_resume(run: SearchRun, precision: PrecisionChoice) -> list[str]:
    """Append what a resumed search runs with to ``environment.json``; warn on stderr, and
    return, what differs from the search's start (``tensorflow 2.22.0 (was 2.21.0)``)."""
    path = run.run_dir.environment
    recorded, now = read_json(path), environment(run, precision)
    changes = differences(recorded, now)
    if changes:
        print(
            f"automl: warning: resumed with {'; '.join(changes)}: the trials before and "
            f"after may not be comparable ({path} keeps both)",
            file=sys.stderr,
        )
    resumes = [*recorded.get("resumes", []), now | {"changes": changes}]
    write_json(path, recorded | {"resumes": resumes})
    return changes


def differences(before: dict, now: dict) -> list[str]:
    """Each fact of ``now`` that differs from ``before``, as ``name value (was value)``."""
    old, new = environment_facts(before), environment_facts(now)
    return [
        f"{name} {value} (was {old.get(name)})"
        for name, value in new.items()
        if value != old.get(name)
    ]
