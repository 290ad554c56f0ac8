"""Tests for keras_npset.export: dense copies and SavedModel export of sparse models."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_npset import NeuronPruning, SETEvolution, SparseDense, to_dense_model  # noqa: E402
from keras_npset.export import export_saved_model  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((48, 12)).astype("float32")
Y = RNG.integers(0, 3, 48)


def _sequential():
    return keras.Sequential(
        [
            keras.Input((12,)),
            SparseDense(24, activation="relu", seed=1, name="h1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.2, name="drop"),
            SparseDense(16, activation="tanh", seed=2, name="h2"),
            SparseDense(3, activation="softmax", use_bias=False, seed=3, name="out"),
        ]
    )


def _functional():
    inputs = keras.Input((12,))
    x = SparseDense(24, activation="relu", seed=1, name="h1")(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = SparseDense(16, activation="relu", seed=2, name="h2")(x)
    outputs = SparseDense(3, seed=3, name="out")(x)
    return keras.Model(inputs, outputs)


def _train(model):
    keras.utils.set_random_seed(0)
    model.compile(
        keras.optimizers.Adam(0.01),
        "sparse_categorical_crossentropy"
        if model.layers[-1].activation is keras.activations.softmax
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # SET at the end of epoch 0, pruning at the beginning of epoch 1.
    callbacks = [
        SETEvolution(zeta=0.3, seed=0),
        NeuronPruning(alpha=0.25, start=1, epochs=0, seed=0),
    ]
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0, shuffle=False, callbacks=callbacks)
    return model


@pytest.fixture(scope="module", params=[_sequential, _functional], ids=["sequential", "functional"])
def trained(request):
    return _train(request.param())


def test_to_dense_model_predicts_the_same(trained):
    model = trained
    dense = to_dense_model(model)
    assert not any(isinstance(layer, SparseDense) for layer in dense.layers)
    assert type(dense) is type(model) or isinstance(dense, keras.Model)
    for layer in model.layers:
        if isinstance(layer, SparseDense):
            twin = dense.get_layer(layer.name)
            assert isinstance(twin, keras.layers.Dense)
            assert twin.units == layer.units
            np.testing.assert_array_equal(twin.kernel.numpy(), layer.to_dense_kernel())
    np.testing.assert_allclose(
        dense.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )
    # Pruned widths: the dense copy is as small as the pruned model.
    assert model.get_layer("h1").units == 18 and model.get_layer("h2").units == 12
    assert dense.get_layer("h2").kernel.shape == (18, 12)


def test_dense_copy_loads_without_the_package(trained, tmp_path):
    model = trained
    path = str(tmp_path / "dense.keras")
    dense = to_dense_model(model)
    # Nothing in the saved config refers to this package.
    assert "keras_npset" not in json.dumps(dense.get_config(), default=str)
    dense.save(path)
    loaded = keras.models.load_model(path, custom_objects={})
    np.testing.assert_allclose(
        loaded.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )


def test_sequential_built_from_data_and_nested_model():
    inner = keras.Sequential(
        [SparseDense(8, activation="relu", seed=4, name="inner_h")], name="inner"
    )
    model = keras.Sequential(
        [
            SparseDense(10, activation="relu", seed=5, name="h"),
            inner,
            keras.layers.Dense(2, name="head"),
        ]
    )
    model(X[:2])  # built from data: no Input layer
    dense = to_dense_model(model)
    assert isinstance(dense.get_layer("inner").get_layer("inner_h"), keras.layers.Dense)
    np.testing.assert_allclose(
        dense.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )


def test_saved_model_export_serves_identical_predictions(trained, tmp_path):
    model = trained
    path = str(tmp_path / "served")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(
        served.serve(tf.constant(X)).numpy(), model.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )
    # Any batch size.
    assert served.serve(tf.constant(X[:5])).shape == (5, 3)


def test_export_saved_model_without_xla(trained, tmp_path):
    model = trained
    path = tmp_path / "portable"
    export_saved_model(model, path, verbose=False)
    graph = (path / "saved_model.pb").read_bytes()
    assert b"_XlaMustCompile" not in graph and b"SparseTensorDenseMatMul" in graph
    served = tf.saved_model.load(str(path))
    np.testing.assert_allclose(
        served.serve(tf.constant(X)).numpy(), model.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )
    # The layers are back on their own kernel path.
    sparse = [layer for layer in model.layers if isinstance(layer, SparseDense)]
    assert {layer.kernel_impl for layer in sparse} == {"auto"}
    assert all(layer.supports_jit for layer in sparse)
    with pytest.raises(ValueError, match=r"Received: kernel_impl='cuda'"):
        export_saved_model(model, tmp_path / "x", kernel_impl="cuda")
    with pytest.raises(ValueError, match=r"Received: filepath=None"):
        export_saved_model(model, None)


def test_use_kernel_sets_the_kernel_and_jit_support_together():
    layer = SparseDense(3, kernel_impl="gather")
    assert layer.use_kernel("csr") == "gather"
    assert layer.kernel_impl == "csr" and not layer.supports_jit
    assert layer.use_kernel("auto") == "csr"
    assert layer.kernel_impl == "auto" and layer.supports_jit
    with pytest.raises(ValueError, match=r"Received: kernel_impl='cuda'"):
        layer.use_kernel("cuda")
    assert layer.kernel_impl == "auto" and layer.supports_jit  # unchanged


def test_rejects_what_it_cannot_convert():
    with pytest.raises(ValueError, match=r"Received: model="):
        to_dense_model("model.keras")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.h = SparseDense(4)

        def call(self, x):
            return self.h(x)

    sub = Sub()
    sub(X[:2])
    with pytest.raises(ValueError, match=r"Sequential or functional.*Received: model="):
        to_dense_model(sub)
    with pytest.raises(ValueError, match=r"built.*Received: model="):
        to_dense_model(keras.Sequential([SparseDense(4)]))
