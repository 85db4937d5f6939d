"""Which devices trials may use, found without initialising CUDA in this process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from automl_core.errors import UsageError


@dataclass(frozen=True)
class Slot:
    """One place a trial can run: a GPU, or a share of the CPU cores."""

    name: str
    """``gpu:0`` or ``cpu:0``: shown in the report and recorded with the result."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment the trial's process starts with (``CUDA_VISIBLE_DEVICES``...)."""
    threads: int | None = None
    """TensorFlow intra-op threads for a CPU slot; ``None`` leaves TF's default."""

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("gpu")


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [d.strip() for d in declared.split(",") if d.strip() and d.strip() != "-1"]
    return re.findall(r"^GPU (\d+):", _nvidia_smi("-L"), flags=re.MULTILINE)


def gpu_names(ids: list[str]) -> list[str]:
    """The model names of the GPUs ``ids`` (indices or UUIDs, as ``CUDA_VISIBLE_DEVICES``
    gives them), from ``nvidia-smi``: ``unknown`` for one it does not list."""
    listing = _nvidia_smi("--query-gpu=index,uuid,name", "--format=csv,noheader")
    names = {}
    for index, uuid, name in re.findall(r"^(\d+), (GPU-[^,]+), (.+)$", listing, re.MULTILINE):
        names[index] = names[uuid] = name.strip()
    return [names.get(gpu, "unknown") for gpu in ids]


def _nvidia_smi(*args: str) -> str:
    """``nvidia-smi``'s output; empty where there is none or it fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        return subprocess.run([smi, *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def plan_slots(devices: str | None = None, workers: int | None = None) -> list[Slot]:
    """One slot per GPU (``devices``: ``"0,2"`` picks some), else ``workers`` CPU slots.

    CPU slots split the cores between them, so two workers on two cores train with
    one thread each rather than fighting over both.
    """
    gpus = visible_gpus() if devices is None else _parse_devices(devices)
    if gpus:
        per_gpu = max(1, workers or 1)
        return [
            Slot(f"gpu:{gpu}" + (f"/{i}" if per_gpu > 1 else ""), {"CUDA_VISIBLE_DEVICES": gpu})
            for gpu in gpus
            for i in range(per_gpu)
        ]
    count = workers or 1
    cores = os.cpu_count() or 1
    threads = max(1, cores // count)
    return [Slot(f"cpu:{i}", {"CUDA_VISIBLE_DEVICES": ""}, threads) for i in range(count)]


def _parse_devices(devices: str) -> list[str]:
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    if not ids or not all(re.fullmatch(r"\d+|GPU-[0-9a-fA-F-]+", d) for d in ids):
        raise UsageError(f"--devices takes GPU ids like 0,2; got {devices!r}")
    return ids
