"""Exporters, looked up the way the engine finds them (register_exporters)."""

from __future__ import annotations

import numpy as np

from automl_core.plugins import load_plugins


def test_keras_exporter_writes_a_loadable_model(tmp_path):
    import keras

    export = load_plugins()["exporters"].get("keras").obj
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    path = export(model, tmp_path, {"classes": ["a", "b"]})
    assert path == tmp_path / "model.keras"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(
        keras.models.load_model(path).predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-6,
    )
