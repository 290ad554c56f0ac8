"""keras_npset.load_model: `.keras` files load without the user registering anything."""

import subprocess
import sys

import keras
import numpy as np

import keras_npset
from keras_npset import SETSquaredError, SparseDense


def _model():
    inputs = keras.Input((9,))
    x = SparseDense(7, epsilon=2, activation="relu", seed=0)(inputs)
    outputs = SparseDense(3, epsilon=2, activation="sigmoid", seed=1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), SETSquaredError())
    return model


def test_load_model_gives_identical_predictions_and_loss(tmp_path, rng):
    model = _model()
    x = rng.standard_normal((8, 9)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 8), 3)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras_npset.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.loss, SETSquaredError)
    assert loaded.get_layer(model.layers[1].name).nnz == model.layers[1].nnz


def test_reloaded_predictions_are_identical_at_csr_batch_sizes(tmp_path, rng):
    """From a batch of 16 `"auto"` multiplies with CSR kernels; predictions stay bitwise equal."""
    inputs = keras.Input((200,))
    x = SparseDense(300, activation="relu", seed=0)(inputs)
    outputs = SparseDense(4, activation="softmax", seed=1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy")
    x = rng.standard_normal((256, 200)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, 256), 4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras_npset.load_model(path)
    for batch in (32, 64):
        np.testing.assert_array_equal(
            loaded.predict(x, batch_size=batch, verbose=0),
            model.predict(x, batch_size=batch, verbose=0),
        )


def test_load_model_in_a_fresh_process(tmp_path, rng):
    model = _model()
    x = rng.standard_normal((4, 9)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    # A fresh process that imports nothing but the loader.
    code = (
        "import numpy as np, sys\n"
        "from keras_npset.saving import load_model\n"
        f"m = load_model({str(path)!r})\n"
        f"y = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        f"np.testing.assert_array_equal(y, np.load({str(tmp_path / 'y.npy')!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
