"""The winner: the best trial's model (or its refit on all data), flip test-time
augmentation kept when it helped, taking images of any size, saved as
``winner/model.keras`` with its facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl_core.results.predict import write_sidecars
from automl_core.rundir import write_json

if TYPE_CHECKING:
    from automl_core.engine.run import SearchRun
    from automl_core.training.trial import TrialResult


def save_winner(run: SearchRun, refit: TrialResult | None) -> None:
    """Write ``winner/``: ``model.keras``, its sidecars and ``winner.json``."""
    from keras.models import load_model

    from automl_core.training.input_size import with_any_input_size
    from automl_core.training.tta import with_flip_averaging

    best = run.leaderboard[0]
    model = load_model((refit or best).model_path)
    tta_helps = (best.val_accuracy_tta or 0.0) > best.val_accuracy
    if tta_helps:
        model = with_flip_averaging(model)
    model = with_any_input_size(model)
    metadata = {
        "trial_id": best.trial_id,
        "architecture": best.architecture,
        "augmenter": best.augmenter,
        "hyperparameters": best.hyperparameters,
        "val_accuracy": best.val_accuracy,
        "classes": run.data.class_names,
        "input_shape": list(run.data.input_shape),
        "refit": None
        if refit is None
        else {
            "epochs": refit.epochs_run,
            "images": len(run.data.y_train) + len(run.data.y_val),
            "train_seconds": refit.train_seconds,
        },
        "test_time_augmentation": {
            "kind": "horizontal flip averaging",
            "val_accuracy_without": best.val_accuracy,
            "val_accuracy_with": best.val_accuracy_tta,
            "kept": tta_helps,
        },
    }
    export = run.plugins["exporters"].get("keras").obj
    winner = run.run_dir.winner
    winner.path.mkdir(parents=True, exist_ok=True)
    export(model, winner.path, metadata)  # the keras format's file is winner.model
    write_sidecars(winner.path, run.data.class_names, run.data.input_shape[0])
    write_json(winner.info, metadata)
