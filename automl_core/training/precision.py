"""Whether trials train faster in bfloat16 on this CPU: measured, not guessed from flags.

CPU flags do not tell. Intel AMX about halves a convnet's training time in bfloat16, and
so does AVX512-BF16 on an AMD EPYC without AMX (1,157 against 596 images/s); CPUs without
bfloat16 instructions train slower in it. So ``--precision auto`` on a CPU times a probe:
a small conv net (three conv + batch-norm stages) trained on random 32x32 images at batch
128, float32 and mixed_bfloat16 steps alternating, the first steps (tracing) left out, a
few seconds in all. The probe runs in its own process (``python -m
automl_core.training.precision``) with the trials' thread count, so the search's process
keeps no TensorFlow state from it. Its result is cached per machine (CPU model and flags,
TensorFlow version, threads) in ``$AUTOML_CACHE_DIR/precision.json``: only the first
search on a machine pays for it. On GPUs ``auto`` trains in float32, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from automl_core.rundir import RunDir, read_json, write_json

PROBE_BATCH, PROBE_SIZE, PROBE_CLASSES = 256, 32, 10
PROBE_VERSION = 2
"""Part of the cache key: a changed probe measures again (1: one narrow conv a stage at
batch 128, dominated by per-step overhead, measured bfloat16 at 1.13x where airbench
trains 1.6x faster in it)."""
PROBE_SECONDS = 4.0
"""Timed training, both precisions together, after the warm-up steps."""
WARMUP_STEPS = 2
"""Steps per precision left out of the timing: the first one traces the training step."""
PROBE_TIMEOUT = 300
CLEARLY_FASTER = 1.15
"""bfloat16 is chosen when it trains at least this many times as fast as float32: a
closer call is within the probe's noise and not worth bfloat16's coarser numbers."""
POLICIES = ("float32", "mixed_bfloat16")
CACHE_FILE = "precision-probe.json"
"""In the cache folder: one measurement per machine key."""


class ProbeError(RuntimeError):
    """The probe's process failed or printed no figures."""


@dataclass
class Measurement:
    """One probe on one machine: training images per second in each precision."""

    float32: float
    bfloat16: float
    cpu: str
    amx: bool
    tensorflow: str
    threads: int | None
    batch: int
    measured_at: float

    @property
    def speedup(self) -> float:
        return self.bfloat16 / self.float32


@dataclass
class PrecisionChoice:
    """What a search's ``--precision`` resolved to on this machine, and why."""

    requested: str
    on_gpu: bool
    bfloat16_faster: bool = False
    """``auto`` on a CPU: the probe found bfloat16 at least ``CLEARLY_FASTER``."""
    measurement: Measurement | None = None
    note: str = ""
    """Why nothing was measured under ``auto`` on a CPU (the probe failed, or no
    architecture may train in mixed precision)."""

    def policy(self, *, on_gpu: bool, declared: bool) -> str:
        """The Keras dtype policy of a trial on that device, for an architecture
        ``declared`` mixed-precision safe or not."""
        return (
            training_policy(
                self.requested,
                on_gpu=on_gpu,
                declared=declared,
                bfloat16_faster=self.bfloat16_faster,
            )
            or "float32"
        )

    def reason(self) -> str:
        """Why: ``measured 1.94x float32 on this CPU``, ``--precision float32``..."""
        if self.measurement is not None:
            return f"measured {self.measurement.speedup:.2f}x float32 on this CPU"
        if self.requested == "auto" and self.on_gpu:
            return "auto on GPUs; --precision mixed trains in float16"
        return self.note or f"--precision {self.requested}"

    def summary(self) -> str:
        """One line: what trials train in, and why."""
        if self.requested == "mixed":
            compute = "float16" if self.on_gpu else "bfloat16"
        elif self.bfloat16_faster:
            compute = "bfloat16 for architectures declared mixed-precision safe"
        else:
            compute = "float32"
        return f"{compute} ({self.reason()})"

    def record(self, declared: dict[str, bool]) -> dict:
        """``precision.json``: this choice, and each architecture's policy by
        ``declared`` (name -> declared mixed-precision safe)."""
        return asdict(self) | {
            "summary": self.summary(),
            "architectures": {
                name: self.policy(on_gpu=self.on_gpu, declared=safe)
                for name, safe in declared.items()
            },
        }


def resolve_precision(
    requested: str,
    *,
    on_gpu: bool,
    cache_dir: Path,
    threads: int | None = None,
    declared: bool = True,
) -> PrecisionChoice:
    """Resolve ``--precision``: ``auto`` on a CPU measures bfloat16 (once per machine,
    cached in ``cache_dir``) when some architecture is ``declared`` mixed-precision safe;
    ``threads`` is a trial's TensorFlow thread count."""
    if requested != "auto" or on_gpu:
        return PrecisionChoice(requested, on_gpu)
    if not declared:
        return PrecisionChoice(requested, on_gpu, note="no architecture declares mixed precision")
    try:
        found = measurement(Path(cache_dir), threads)
    except ProbeError as error:
        return PrecisionChoice(requested, on_gpu, note=f"the bfloat16 probe failed: {error}")
    return PrecisionChoice(requested, on_gpu, found.speedup >= CLEARLY_FASTER, found)


def recorded_bfloat16_faster(run_dir: RunDir) -> bool:
    """The search's verdict for ``auto`` on this CPU, from its ``precision.json``."""
    path = run_dir.precision
    return path.is_file() and bool(read_json(path).get("bfloat16_faster"))


def measurement(cache_dir: Path, threads: int | None) -> Measurement:
    """This machine's probe result: from the cache, else measured now and cached. An
    unreadable cache is measured again and rewritten."""
    path = cache_dir / CACHE_FILE
    key = machine_key(threads)
    entries = _read_cache(path)
    try:
        return Measurement(**entries[key])
    except (KeyError, TypeError):  # not measured yet, or an entry from another version
        pass
    found = probe(threads)
    write_json(path, entries | {key: asdict(found)})
    return found


def _read_cache(path: Path) -> dict:
    """The cache's entries; none when the file is missing or unreadable."""
    try:
        entries = read_json(path)
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def machine_key(threads: int | None) -> str:
    """What the measurement depends on: CPU model and flags, TensorFlow, threads."""
    model, flags = cpu_info()
    facts = [model, " ".join(sorted(flags)), tensorflow_version(), str(threads)]
    facts.append(str(PROBE_VERSION))
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:16]


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags (Linux); elsewhere the platform's name."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            model = value.strip()
        elif name.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags


def cpu_has_bfloat16_matrix_units() -> bool:
    """The CPU flags include ``amx_bf16`` (Intel AMX)."""
    return "amx_bf16" in cpu_info()[1]


def tensorflow_version() -> str:
    """Without importing TensorFlow."""
    return installed_version("tensorflow")


def installed_version(distribution: str) -> str:
    """An installed distribution's version, from its metadata (importing nothing), or
    ``unknown``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def probe(threads: int | None) -> Measurement:
    """Time the probe net in a fresh process with ``threads`` TensorFlow threads, CPU only."""
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(threads or 0)],
            capture_output=True,
            text=True,
            env=env,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        raise ProbeError(f"no answer in {PROBE_TIMEOUT} s") from error
    lines = done.stdout.splitlines()
    if done.returncode or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeError(f"exit code {done.returncode}: {last}")
    figures = json.loads(lines[-1])
    return Measurement(
        float32=figures["float32"],
        bfloat16=figures["mixed_bfloat16"],
        cpu=cpu_info()[0],
        amx=cpu_has_bfloat16_matrix_units(),
        tensorflow=figures["tensorflow"],
        threads=threads,
        batch=PROBE_BATCH,
        measured_at=time.time(),
    )


def probe_net(input_shape: tuple[int, int, int], classes: int):
    """Three stages of two convolutions with batch norm, 32/128/128 wide: the shape and the
    compute of the zoo's small-image nets (airbench at width 32)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 128, 128):
        for pool in (True, False):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            if pool:
                x = layers.MaxPooling2D()(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="precision_probe")


def throughputs(
    build: Callable,
    *,
    batch: int = PROBE_BATCH,
    size: int = PROBE_SIZE,
    seconds: float = PROBE_SECONDS,
) -> dict[str, float]:
    """Training images per second of ``build(input_shape, classes)``'s model under each
    of ``POLICIES``: one step of each in turn on random data, after ``WARMUP_STEPS``."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    y = np.eye(PROBE_CLASSES, dtype="float32")[rng.integers(0, PROBE_CLASSES, batch)]
    models = {}
    previous = keras.mixed_precision.global_policy()
    try:
        for policy in POLICIES:
            keras.mixed_precision.set_global_policy(policy)
            models[policy] = build((size, size, 3), PROBE_CLASSES)
            models[policy].compile(
                optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy"
            )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for model in models.values():
        for _ in range(WARMUP_STEPS):
            model.train_on_batch(x, y)
    spent, steps = dict.fromkeys(models, 0.0), dict.fromkeys(models, 0)
    while sum(spent.values()) < seconds:
        for policy, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            spent[policy] += time.perf_counter() - start
            steps[policy] += 1
    return {policy: steps[policy] * batch / spent[policy] for policy in models}


def main() -> int:
    """The probe's process: print the throughputs and TensorFlow's version as one JSON line."""
    from automl_core.training.runtime import configure_tensorflow

    configure_tensorflow(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    import tensorflow as tf

    figures = throughputs(probe_net)
    print(json.dumps(figures | {"tensorflow": tf.__version__}))
    return 0


def training_policy(
    precision: str, *, on_gpu: bool, declared: bool, bfloat16_faster: bool
) -> str | None:
    """The Keras dtype policy a trial trains under (``None``: float32).

    ``mixed``: float16 compute on GPUs, bfloat16 on CPUs. ``auto``: bfloat16 on a CPU
    where the search's probe measured it clearly faster (``bfloat16_faster``, see
    ``automl_core.training.precision``), for architectures ``declared`` safe in mixed
    precision (``mixed_precision=True``); float32 elsewhere, GPUs included. Models are
    saved in float32 whatever they trained in.
    """
    if precision == "mixed":
        return "mixed_float16" if on_gpu else "mixed_bfloat16"
    if precision == "auto" and declared and not on_gpu and bfloat16_faster:
        return "mixed_bfloat16"
    return None


if __name__ == "__main__":
    sys.exit(main())
