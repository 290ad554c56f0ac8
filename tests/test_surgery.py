"""Physical removal of units and model refresh, checked against dense slicing."""

import keras
import numpy as np
import pytest

from keras_npset import SparseDense, _keras
from keras_npset.graph import links
from keras_npset.optimizer_state import slot_variables
from keras_npset.surgery import compact, refresh_model, remove_units, resizable, rewire_layer
from keras_npset.topology import Rewiring, check_indices


def model_with_bn():
    model = keras.Sequential(
        [
            keras.Input((12,)),
            SparseDense(10, epsilon=3, activation="relu", seed=0, name="a"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.1, name="drop"),
            SparseDense(4, epsilon=3, seed=1, name="b"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((32, 12)), rng.standard_normal((32, 4)), epochs=1, verbose=0)
    return model


def test_remove_units_slices_every_piece(rng):
    model = model_with_bn()
    a, bn, b = model.get_layer("a"), model.get_layer("bn"), model.get_layer("b")
    w_a, w_b, bias = a.to_dense_kernel(), b.to_dense_kernel(), a.bias.numpy()
    bn_weights = [w.numpy() for w in bn.weights]
    keep = np.array([0, 2, 3, 7, 9])
    remove_units(links(model)[0], keep, model.optimizer, model.distribute_strategy)
    refresh_model(model)
    np.testing.assert_array_equal(a.to_dense_kernel(), w_a[:, keep])
    np.testing.assert_array_equal(b.to_dense_kernel(), w_b[keep])
    np.testing.assert_array_equal(a.bias.numpy(), bias[keep])
    for weight, old in zip(bn.weights, bn_weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), old[keep])
    check_indices(a.indices.numpy(), (12, 5))
    check_indices(b.indices.numpy(), (5, 4))
    assert (a.units, b.input_dim) == (5, 5)
    assert b.get_build_config()["input_shape"] == (None, 5)
    assert bn.get_build_config()["input_shape"][-1] == 5
    x = rng.standard_normal((8, 12)).astype("float32")
    model.fit(x, np.zeros((8, 4)), epochs=1, verbose=0)  # trains at the new widths


def test_rewire_layer_sets_new_values_and_carries_old(rng):
    layer = SparseDense(5, density=0.5, seed=0)
    layer.build((None, 4))
    old = layer.values.numpy().copy()
    idx = layer.indices.numpy()
    rewiring = Rewiring(idx, np.r_[np.arange(len(idx) - 1), -1], (4, 5))
    rewire_layer(layer, rewiring, new_values=np.array([9.0], "float32"))
    np.testing.assert_array_equal(layer.values.numpy(), np.r_[old[:-1], 9.0])


def dense_forward(model, x):
    h = x
    for layer in model.layers:
        if isinstance(layer, SparseDense):
            h = keras.ops.convert_to_numpy(
                layer.activation(h @ layer.to_dense_kernel() + layer.live_bias())
            )
    return h


@pytest.mark.parametrize("kernel_impl", ["auto", "gather", "csr", "sparse_dense_matmul"])
def test_resizable_layers_shrink_without_retracing(rng, kernel_impl):
    """Pruning into padding, then compacting resizable layers, keeps every traced function.

    Padded and then exact, the model predicts what its dense twin does
    (`"auto"` at batch 2 takes the gather path, at 40 the CSR one), and
    trains on; storage and slots are the same variables, at the live sizes.
    """
    model = keras.Sequential(
        [
            keras.Input((12,)),
            SparseDense(10, epsilon=3, activation="relu", seed=0, kernel_impl=kernel_impl),
            keras.layers.Dropout(0.1),
            SparseDense(4, epsilon=3, seed=1, kernel_impl=kernel_impl),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    x, y = rng.standard_normal((40, 12)).astype("float32"), rng.standard_normal((40, 4))
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    link = links(model)[0]
    a, b = link.layer, link.next
    optimizer = model.optimizer
    for layer, units in ((a, True), (b, False)):
        layer.set_pad_ready(True)
        assert layer.set_resizable(optimizer, units=units)
    refresh_model(model)
    assert resizable([link], optimizer)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for batch in (2, 40):  # a trace per batch size
        model.predict(x, batch_size=batch, verbose=0)
    functions = [
        f
        for name in ("train_function", "predict_function")
        for f in _keras._tf_functions(getattr(model, name))
    ]
    storage = [v.value for layer in (a, b) for v in layer.weights] + [
        s.value for layer in (a, b) for v in layer.weights for s in slot_variables(optimizer, v)
    ]
    counts = [f.experimental_get_tracing_count() for f in functions]
    remove_units(link, np.array([0, 2, 3, 7, 9]), optimizer)  # within capacity: padded
    assert a.padded and b.padded
    for batch in (2, 40):
        np.testing.assert_allclose(
            model.predict(x, batch_size=batch, verbose=0), dense_forward(model, x), atol=1e-5
        )
    assert compact([link], optimizer)  # in place
    refresh_model(model, retrace=False)
    assert not a.padded and not b.padded and (a.units, b.input_dim) == (5, 5)
    assert a.values.value.shape.as_list() == [None] and tuple(a.values.shape) == (a.nnz,)
    assert [tuple(s.shape) for s in slot_variables(optimizer, a.bias)] == [(5,)]
    assert [v.value for layer in (a, b) for v in layer.weights] + [
        s.value for layer in (a, b) for v in layer.weights for s in slot_variables(optimizer, v)
    ] == storage
    for batch in (2, 40):
        np.testing.assert_allclose(
            model.predict(x, batch_size=batch, verbose=0), dense_forward(model, x), atol=1e-5
        )
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert [f.experimental_get_tracing_count() for f in functions] == counts
    assert [
        f
        for name in ("train_function", "predict_function")
        for f in _keras._tf_functions(getattr(model, name))
    ] == functions
    assert model.output_shape == (None, 4)


def test_set_resizable_refuses_what_it_cannot_trace():
    """Units read from the bias: a layer without one cannot resize its units, only its inputs."""
    layer = SparseDense(6, use_bias=False, seed=0)
    layer.build((None, 5))
    assert not layer.set_resizable(units=True) and not layer.resizable
    assert layer.set_resizable(units=False) and layer.resizable and not layer.resizable_units
    assert not layer.set_resizable(units=False)  # no change
