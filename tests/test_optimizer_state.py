"""Slot discovery and carrying across same-shape and shape-changing updates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset.optimizer_state import (
    base_optimizer,
    carry,
    make_resizable,
    read,
    set_value,
    slot_variables,
)

OPTIMIZERS = {
    "sgd_momentum": (lambda: keras.optimizers.SGD(0.1, momentum=0.9), 1),
    "sgd_plain": (lambda: keras.optimizers.SGD(0.1), 0),
    "adam": (lambda: keras.optimizers.Adam(0.01), 2),
    "adam_amsgrad": (lambda: keras.optimizers.Adam(0.01, amsgrad=True), 3),
    "rmsprop_momentum": (lambda: keras.optimizers.RMSprop(0.01, momentum=0.5), 2),
    "adagrad": (lambda: keras.optimizers.Adagrad(0.01), 1),
}


def trained(make_optimizer):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6), keras.layers.Dense(2)])
    model.compile(make_optimizer(), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, 2)), epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_slot_variables_found_for_each_optimizer(name):
    make, count = OPTIMIZERS[name]
    model = trained(make)
    kernel = model.layers[0].kernel
    slots = slot_variables(model.optimizer, kernel)
    assert len(slots) == count
    assert all(tuple(s.shape) == (4, 6) for s in slots)
    # Slots of one variable are not the slots of another.
    other = slot_variables(model.optimizer, model.layers[1].kernel)
    assert not {id(s) for s in slots} & {id(s) for s in other}


def test_unbuilt_optimizer_and_unknown_variable_have_no_slots():
    optimizer = keras.optimizers.Adam()
    variable = keras.Variable(np.zeros(3))
    assert slot_variables(optimizer, variable) == []
    assert slot_variables(None, variable) == []
    model = trained(lambda: keras.optimizers.Adam())
    assert slot_variables(model.optimizer, variable) == []


def test_loss_scale_optimizer_is_unwrapped():
    inner = keras.optimizers.SGD(0.1, momentum=0.9)
    wrapped = keras.optimizers.LossScaleOptimizer(inner)
    assert base_optimizer(wrapped) is inner


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_carry_with_shape_change_rekeys_optimizer_and_keeps_training(name):
    model = trained(OPTIMIZERS[name][0])
    layer = model.layers[1]
    old_slots = [s.numpy().copy() for s in slot_variables(model.optimizer, layer.bias)]
    old_bias = layer.bias.numpy().copy()
    source = np.array([1, -1, 0])  # grows the bias from 2 to 3 entries
    carry(layer.bias, np.array([old_bias[1], 5.0, old_bias[0]]), source, model.optimizer)
    assert tuple(layer.bias.shape) == (3,)
    for slot, old in zip(slot_variables(model.optimizer, layer.bias), old_slots, strict=True):
        np.testing.assert_array_equal(slot.numpy(), [old[1], 0.0, old[0]])
    # The optimizer recognises the new storage (a stale key would raise here).
    model.optimizer._check_variables_are_known([layer.bias])


def test_set_value_same_shape_assigns_in_place():
    variable = keras.Variable(np.zeros(3, "float32"))
    storage = variable.value
    set_value(variable, np.ones(3))
    assert variable.value is storage
    np.testing.assert_array_equal(variable.numpy(), 1)
    set_value(variable, np.arange(5))
    assert variable.value is not storage and tuple(variable.shape) == (5,)
    variable.assign(np.zeros(5))  # later assigns see the new shape


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_read_and_same_shape_set_value_match_keras(dtype):
    rng = np.random.default_rng(1)
    variable = keras.Variable(rng.integers(-50, 50, (7, 2)).astype(dtype), dtype=dtype)
    got = read(variable)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, variable.numpy())
    got[:] = 0  # a copy: the variable is untouched
    assert np.any(variable.numpy() != 0)
    new = rng.integers(-50, 50, (7, 2)).astype(dtype)
    expected = new.copy()
    set_value(variable, new)
    new[:] = 0  # the variable holds a copy of what it was given
    np.testing.assert_array_equal(variable.numpy(), expected)


def test_same_shape_set_value_is_seen_by_a_traced_function():
    variable = keras.Variable(np.zeros(4, "float32"))
    total = tf.function(lambda: tf.reduce_sum(variable.value))
    assert float(total()) == 0.0
    set_value(variable, np.arange(4.0))
    assert float(total()) == 6.0  # the same storage, updated in place


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_resizable_variable_and_slots_change_shape_in_place(name):
    """After `make_resizable`, `carry` resizes the same storage: a traced update stays valid."""
    model = trained(OPTIMIZERS[name][0])
    optimizer, bias = model.optimizer, model.layers[1].bias
    assert make_resizable(bias, optimizer) and not make_resizable(bias, optimizer)
    storages = [v.value for v in (bias, *slot_variables(optimizer, bias))]

    @tf.function
    def step():
        optimizer.apply([tf.ones_like(tf.convert_to_tensor(bias))], [bias])

    step()
    old_slots = [s.numpy().copy() for s in slot_variables(optimizer, bias)]
    old_bias = bias.numpy().copy()
    carry(bias, np.array([old_bias[1], 5.0, old_bias[0]]), np.array([1, -1, 0]), optimizer)
    assert [v.value for v in (bias, *slot_variables(optimizer, bias))] == storages
    assert tuple(bias.shape) == (3,)
    for slot, old in zip(slot_variables(optimizer, bias), old_slots, strict=True):
        assert tuple(slot.shape) == (3,)
        np.testing.assert_array_equal(slot.numpy(), [old[1], 0.0, old[0]])
    optimizer._check_variables_are_known([bias])
    step()  # the update traced at 2 entries now updates 3
    assert step.experimental_get_tracing_count() == 1
    assert bias.numpy().shape == (3,) and not np.array_equal(bias.numpy()[1], 5.0)
