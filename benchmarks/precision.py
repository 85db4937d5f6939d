"""float32 against mixed_bfloat16 training on this CPU: the probe net and real architectures.

Prints the CPU, whether it has AMX, then training images/s in each precision for the
``--precision auto`` probe net (its own batch) and for each architecture named (default
``resnet`` and ``airbench`` where registered) at batch 256 and 512 on 32x32 random images,
with the ratio; then what ``auto`` chooses on this machine (the cached measurement, or a
fresh probe).

    PYTHONPATH=$PWD/.shim python benchmarks/precision.py [ARCHITECTURE ...]
"""

from __future__ import annotations

import sys

BATCHES = (256, 512)
SECONDS = 8.0
"""Timed training per row, both precisions together."""


def main(names: list[str]) -> None:
    from automl_core.data.cache import cache_root
    from automl_core.execution.devices import plan_slots
    from automl_core.plugin.manager import load_plugins
    from automl_core.training.precision import (
        PROBE_BATCH,
        cpu_has_bfloat16_matrix_units,
        cpu_info,
        probe_net,
        resolve_precision,
        tensorflow_version,
        throughputs,
    )
    from automl_core.training.runtime import configure_tensorflow

    configure_tensorflow()
    print(f"CPU: {cpu_info()[0]}; AMX: {'yes' if cpu_has_bfloat16_matrix_units() else 'no'}")
    print(f"TensorFlow {tensorflow_version()}; {SECONDS:.0f} s timed per row, steps alternating")
    print(f"{'model':<14} {'batch':>5} {'float32 img/s':>14} {'bfloat16 img/s':>15} {'ratio':>6}")
    rows = [("probe net", probe_net, PROBE_BATCH)]
    architectures = load_plugins()["architectures"]
    for name in names or ["resnet", "airbench"]:
        if name in architectures.components:
            rows += [(name, _defaults(name, architectures.get(name).obj), b) for b in BATCHES]
    for label, build, batch in rows:
        found = throughputs(build, batch=batch, seconds=SECONDS)
        f32, bf16 = found["float32"], found["mixed_bfloat16"]
        print(f"{label:<14} {batch:>5} {f32:>14.0f} {bf16:>15.0f} {bf16 / f32:>5.2f}x")
    slot = plan_slots()[0]
    choice = resolve_precision(
        "auto", on_gpu=slot.is_gpu, cache_dir=cache_root(), threads=slot.threads
    )
    print(f"--precision auto on this machine: {choice.summary()}")


def _defaults(name: str, factory):
    """Builds ``name`` at its default hyperparameters, as a trial does."""
    from automl_core.training.space import architecture_scope, initial_space

    def build(input_shape, classes):
        hp = initial_space([name], ["none"])
        with architecture_scope(hp, name):
            return factory(hp, input_shape, classes)

    return build


if __name__ == "__main__":
    main(sys.argv[1:])
