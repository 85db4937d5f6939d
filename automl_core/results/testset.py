"""The winner on a held-out test set: ``--test DIR``, or the folder's own ``test/``.

Scored once, after the search, with the same loader and image size as training, and
written to ``winner/test_metrics.json`` for the report and the model card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from automl_core.data.dataset import TEST
from automl_core.errors import UsageError
from automl_core.rundir import write_json
from automl_core.training.evaluate import evaluate

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun


def evaluate_test_set(run: SearchRun) -> dict | None:
    """Score the saved winner on the test images, if there are any; write the metrics."""
    config = run.config
    own_test = run.dataset_summary.get("subsets", {}).get("test")
    if not (config.test or own_test):
        return None
    loader = run.plugins["datasets"].get(config.dataset).obj
    source = config.test or config.source
    try:
        data = loader(source, image_size=run.data.input_shape[0])
    except UsageError as error:  # a bad test folder must not cost the finished search
        metrics = {"source": source, "error": str(error)}
        write_json(run.run_dir.winner.test_metrics, metrics)
        return metrics
    index = {name: k for k, name in enumerate(run.data.class_names)}
    names = np.asarray(data.class_names)[data.labels]
    keep = np.isin(names, list(index))
    if not config.test:
        keep &= data.subset == TEST
    from keras.models import load_model

    model = load_model(run.winner_path)
    labels = np.asarray([index[name] for name in names[keep]], dtype=np.int32)
    metrics = evaluate(model, data.images[keep], labels, run.data.class_names)
    metrics |= {
        "source": source,
        "unknown_classes": sorted(set(data.class_names) - set(index)),
        "skipped": data.skipped if config.test else [],  # own test/: in dataset.json
    }
    write_json(run.run_dir.winner.test_metrics, metrics)
    return metrics
