"""Physical removal of units and model refresh, checked against dense slicing."""

import keras
import numpy as np

from keras_npset import SparseDense
from keras_npset.graph import links
from keras_npset.surgery import refresh_model, remove_units, rewire_layer
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
