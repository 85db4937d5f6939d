"""What a search tries first, and at which sizes: the warm-start candidates
(each architecture at its defaults, with its recipe's augmenter, guided where it is
registered as guided, once for each of its registered variants) and the sizes its final
run may choose from."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from automl_core.engine.oracle import Oracle
from automl_core.engine.pace import Candidate, Sizes
from automl_core.engine.run import SearchRun
from automl_core.training import input_size
from automl_core.training.space import ARCHITECTURE
from automl_core.training.weights import any_cached


def portfolio(run: SearchRun, oracle: Oracle, costs: dict[str, float]) -> list[Candidate]:
    """Warm start: each architecture not tried yet, at its defaults, with the augmenter of
    its known-good recipe when that one is selected, guided by the candidate registered
    as guiding it (``guides=``) when that one is chosen too, once for each combination of
    its ``variants=``. Those registered ``preferred_up_to`` at least the image size come
    first (the zoo's best small-image network), then the cheapest."""
    if run.plugins["tuners"].get(run.config.tuner).info.get("warm_start") is False:
        return []
    tried = {t.hyperparameters.values.get(ARCHITECTURE) for t in oracle.trials.values()}
    registry = run.plugins["architectures"]
    chosen = []
    for name in run.architectures:
        if name not in tried:
            augmenter = registry.get(name).info.get("augmenter")
            if augmenter not in run.augmenters:
                augmenter = run.augmenters[0]
            chosen += [
                Candidate(name, augmenter, values, costs.get(name))
                for values in variants(name, registry.get(name).info.get("variants", {}))
            ]
    guides = {registry.get(c.architecture).info.get("guides"): c.architecture for c in chosen}
    chosen = [replace(c, guide=guides.get(c.architecture)) for c in chosen]
    side = max(run.data.input_shape[:2])

    def order(candidate: Candidate) -> tuple:
        preferred = registry.get(candidate.architecture).info.get("preferred_up_to", 0)
        return (side > preferred, math.inf if candidate.cost is None else candidate.cost)

    return sorted(chosen, key=order)


def variants(name: str, declared: dict[str, list]) -> list[tuple[tuple[str, object], ...]]:
    """Each combination of an architecture's ``variants=`` values, as candidate values
    (scoped hyperparameter names); one empty combination when it declares none."""
    names = [f"{name}/{hyperparameter}" for hyperparameter in declared]
    return [
        tuple(sorted(zip(names, values, strict=True)))
        for values in itertools.product(*declared.values())
    ]


def from_scratch_on_small_data(
    run: SearchRun, candidates: list[Candidate]
) -> tuple[list[Candidate], list[Candidate]]:
    """On small data (split into folds), ``candidates`` less those whose pretrained
    weights are declared but missing, and those: a large network from random init on a
    few hundred images is a wasted screen (0.500 on two classes, one epoch in 25 s)."""
    if run.data.fold_count < 2:
        return candidates, []
    registry = run.plugins["architectures"]

    def missing(candidate: Candidate) -> bool:
        files = registry.get(candidate.architecture).info.get("weights", ())
        return bool(files) and not any_cached(files)

    return [c for c in candidates if not missing(c)], [c for c in candidates if missing(c)]


def sizes(registry, image_sizes: list[int]) -> dict[str, list[Sizes]]:
    """The sizes of each architecture: the training image size (``image_sizes``, when
    more than one, for those that do not register their own ``image_size``), then those
    it registered (``sizes={"width": {32: 1.0, 64: 4.0}}``: a hyperparameter of its own,
    each value's cost relative to its default)."""
    found: dict[str, list[Sizes]] = {}
    for component in registry.components.values():
        dimensions = found.setdefault(component.name, [])
        if offered := offered_image_sizes(component, image_sizes):
            dimensions.append(
                Sizes(
                    f"{component.name}/{input_size.IMAGE_SIZE}",
                    input_size.size_costs(offered),
                    screen=input_size.screen_size(offered),
                )
            )
        own = component.info.get("sizes", {})
        dimensions += [Sizes(f"{component.name}/{name}", dict(c)) for name, c in own.items()]
    return found


def offered_image_sizes(component, image_sizes: list[int]) -> list[int] | None:
    """The training image sizes an architecture's trials choose from; ``None`` when there
    is no choice, or when it resizes its input itself (registers its own ``image_size``
    among its ``sizes`` or ``variants``)."""
    own = {**component.info.get("sizes", {}), **component.info.get("variants", {})}
    return None if not image_sizes or input_size.IMAGE_SIZE in own else image_sizes
