"""SparseDense against dense references, Keras citizenship, save/load and bad arguments."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import SparseDense
from keras_npset.layers import KERNEL_INITIALIZERS, sparse_values
from keras_npset.topology import check_indices

IMPLS = ["gather", "sparse_dense_matmul", "auto"]


def dense_reference(layer, x):
    return x @ layer.to_dense_kernel() + (layer.bias.numpy() if layer.use_bias else 0.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_dense(rng, impl):
    layer = SparseDense(37, epsilon=4, kernel_impl=impl, bias_initializer="random_normal", seed=3)
    x = rng.standard_normal((9, 53)).astype("float32")
    y = layer(x).numpy()
    check_indices(layer.indices.numpy(), (53, 37))
    np.testing.assert_allclose(y, dense_reference(layer, x), rtol=1e-5, atol=1e-5)
    assert layer.kernel.dense_shape.numpy().tolist() == [53, 37]
    np.testing.assert_array_equal(tf.sparse.to_dense(layer.kernel).numpy(), layer.to_dense_kernel())


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_match_dense(rng, impl):
    layer = SparseDense(21, epsilon=3, activation="tanh", kernel_impl=impl, seed=4)
    x = tf.constant(rng.standard_normal((6, 30)).astype("float32"))
    layer.build(x.shape)
    target = tf.constant(rng.standard_normal((6, 21)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum((layer(x) - target) ** 2)
    dx, dvalues, dbias = tape.gradient(loss, [x, layer.values, layer.bias])

    kernel = tf.Variable(layer.to_dense_kernel())
    bias = tf.Variable(layer.bias.numpy())
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss_ref = tf.reduce_sum((tf.tanh(x @ kernel + bias) - target) ** 2)
    dx_ref, dkernel_ref, dbias_ref = tape.gradient(loss_ref, [x, kernel, bias])
    idx = layer.indices.numpy()
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        dvalues, dkernel_ref.numpy()[idx[:, 0], idx[:, 1]], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(dbias, dbias_ref, rtol=1e-4, atol=1e-5)


def test_only_values_and_bias_are_trainable_and_no_dense_variable():
    layer = SparseDense(40, epsilon=2, seed=0)
    layer.build((None, 50))
    assert [w.name for w in layer.trainable_weights] == ["values", "bias"]
    assert [w.name for w in layer.non_trainable_weights] == ["indices"]
    assert layer.indices.dtype == "int32"  # half the bytes of int64 per step
    for w in layer.weights:
        assert tuple(w.shape) != (50, 40)
    assert layer.nnz == layer.values.shape[0] <= 2 * (50 + 40)


def test_count_params_and_summary_count_live_values_and_biases():
    model = keras.Sequential(
        [
            keras.Input((8,)),
            SparseDense(10, density=0.5, seed=0, name="a"),
            SparseDense(3, density=1.0, use_bias=False, seed=0, name="b"),
        ]
    )
    # By hand: 0.5 * 8 * 10 = 40 connections and 10 biases; 10 * 3 = 30 connections.
    assert model.get_layer("a").count_params() == 40 + 10
    assert model.get_layer("b").count_params() == 30
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    text = "\n".join(lines)
    rows = {
        name: row
        for row in text.splitlines()
        for name in ("a", "b")
        if f"{name} (SparseDense)" in row
    }
    assert rows["a"].split("│")[-2].strip() == "50"
    assert rows["b"].split("│")[-2].strip() == "30"
    assert "Trainable params: 80 " in text
    # The int32 indices (two per connection) are storage; Keras's footer lists
    # them as non-trainable weights (documented in the README).
    assert "Non-trainable params: 140 " in text


def test_count_params_is_live_while_pruning_pads_the_layer(rng):
    from keras_npset import NeuronPruning

    model = keras.Sequential(
        [
            keras.Input((12,)),
            SparseDense(20, epsilon=3, activation="relu", seed=0, name="h"),
            SparseDense(3, epsilon=3, seed=1, name="out"),
        ]
    )
    model.compile("sgd", "mse")
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            for layer in (self.model.get_layer("h"), self.model.get_layer("out")):
                seen.append((epoch, layer.padded, layer.count_params(), layer.nnz + layer.units))

    x = rng.standard_normal((8, 12)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    pruning = NeuronPruning(alpha=0.25, start=1, epochs=1, seed=0)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[pruning, Probe()])
    assert any(padded for epoch, padded, _, _ in seen if epoch == 1)  # the case under test
    for _, _, counted, live in seen:
        assert counted == live


def test_higher_rank_inputs(rng):
    layer = SparseDense(5, epsilon=2, seed=1)
    x = rng.standard_normal((2, 3, 8)).astype("float32")
    y = layer(x).numpy()
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, dense_reference(layer, x), rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape((None, 3, 8)) == (None, 3, 5)


@pytest.mark.parametrize("impl", ["auto", "gather", "csr", "sparse_dense_matmul"])
@pytest.mark.parametrize("batch", [None, 4, 32])
def test_traced_output_has_static_shape(impl, batch):
    layer = SparseDense(7, epsilon=3, seed=0, kernel_impl=impl, activation="softmax")
    layer.build((None, 5))
    fn = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec([batch, 5]))
    assert fn.outputs[0].shape.as_list() == [batch, 7]
    # What Grappler sees: the shape is stated by an op, not only in Python.
    ops = {op.type for op in fn.graph.get_operations()}
    assert "EnsureShape" in ops


_FIT_SCRIPT = """
import keras, numpy as np
from keras_npset import SparseDense
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 50)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 3, 256), 3)
model = keras.Sequential([keras.Input((50,)), SparseDense(40, activation="relu", seed=0),
                          SparseDense(3, activation="softmax", seed=1)])
model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_data=(x, y))
model.predict(x, batch_size=32, verbose=0)
print("done")
"""


def test_fit_with_softmax_output_prints_no_cost_model_warnings():
    """Grappler's cost model warned "PredictCost() ... unknown_rank" on the softmax."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _FIT_SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]
    assert "PredictCost" not in proc.stderr, proc.stderr[-3000:]
    assert "unknown_rank" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("impl", ["auto", "csr"])
def test_repeated_predictions_are_bitwise_equal(rng, impl):
    """Outside training the CSR path is deterministic too (batches of 16 and more)."""
    model = keras.Sequential(
        [
            keras.Input((300,)),
            SparseDense(400, activation="relu", seed=0, kernel_impl=impl),
            SparseDense(300, activation="relu", seed=1, kernel_impl=impl),
            SparseDense(5, activation="softmax", seed=2, kernel_impl=impl),
        ]
    )
    x = rng.standard_normal((500, 300)).astype("float32")
    for batch in (32, 64):
        first = model.predict(x, batch_size=batch, verbose=0)
        for _ in range(4):
            np.testing.assert_array_equal(model.predict(x, batch_size=batch, verbose=0), first)
        np.testing.assert_array_equal(model(x[:batch]).numpy(), first[:batch])


def test_density_overrides_epsilon():
    layer = SparseDense(20, epsilon=1, density=0.5, seed=0)
    layer.build((None, 10))
    assert layer.nnz == 100


def test_seed_reproduces_topology_and_values():
    a, b, c = (SparseDense(30, seed=s) for s in (7, 7, 8))
    for layer in (a, b, c):
        layer.build((None, 40))
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
    np.testing.assert_array_equal(a.values.numpy(), b.values.numpy())
    assert not np.array_equal(a.values.numpy(), c.values.numpy()[: a.nnz])


def test_global_seed_reproduces_unseeded_layers():
    keras.utils.set_random_seed(5)
    a = SparseDense(30)
    a.build((None, 40))
    keras.utils.set_random_seed(5)
    b = SparseDense(30)
    b.build((None, 40))
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())


@pytest.mark.parametrize("name", KERNEL_INITIALIZERS)
def test_value_initializers_scale_with_sparse_fans(rng, name):
    values = sparse_values(name, 20000, 1000, 500, rng)
    fan_in, fan_out = 20000 / 500, 20000 / 1000
    expected = {
        "glorot": 2.0 / (fan_in + fan_out),
        "he": 2.0 / fan_in,
        "lecun": 1.0 / fan_in,
        "set": 0.01,
    }[name.split("_")[0]]
    assert abs(values.var() / expected - 1) < 0.1


def test_supports_jit_is_truthful():
    assert SparseDense(3, kernel_impl="gather").supports_jit
    assert SparseDense(3, kernel_impl="auto").supports_jit
    assert not SparseDense(3, kernel_impl="sparse_dense_matmul").supports_jit
    model = keras.Sequential([keras.Input((4,)), SparseDense(3, kernel_impl="sparse_dense_matmul")])
    model.compile(jit_compile=True, loss="mse")  # Keras falls back with a warning
    assert not model.jit_compile


def test_config_round_trip_with_non_defaults(rng):
    layer = SparseDense(
        12,
        epsilon=3.5,
        density=0.4,
        activation="relu",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer="l2",
        kernel_impl="sparse_dense_matmul",
        seed=11,
        initial_units=20,
        name="custom",
    )
    config = layer.get_config()
    clone = SparseDense.from_config(config)
    assert clone.get_config() == config
    # Behaviour, not just config: same seed -> same topology and outputs.
    x = rng.standard_normal((4, 9)).astype("float32")
    np.testing.assert_allclose(layer(x), clone(x), rtol=1e-6)
    assert clone.initial_units == 20 and not clone.use_bias
    assert clone.kernel_impl == "sparse_dense_matmul"
    assert len(clone.losses) == 1  # the regularizer survived


def mixed_sequential():
    return keras.Sequential(
        [
            keras.Input((30,)),
            SparseDense(24, activation="relu", seed=1, name="s1"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            SparseDense(16, activation="relu", seed=2, name="s2"),
            keras.layers.Dense(8, activation="relu"),
            SparseDense(3, activation="softmax", seed=3, name="out"),
        ]
    )


def mixed_functional():
    inputs = keras.Input((30,))
    h = SparseDense(24, activation="relu", seed=1, name="s1")(inputs)
    h = keras.layers.Dropout(0.2)(h)
    h = keras.layers.BatchNormalization()(h)
    h = SparseDense(16, activation="relu", seed=2, name="s2")(h)
    skip = keras.layers.Dense(16)(inputs)
    h = keras.layers.Add()([h, skip])
    outputs = SparseDense(3, activation="softmax", seed=3, name="out")(h)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build", [mixed_sequential, mixed_functional])
def test_mixed_models_train_save_and_load(tmp_path, rng, build):
    model = build()
    model.compile()  # default arguments work
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.standard_normal((64, 30)).astype("float32")
    y = rng.integers(0, 3, 64)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    for name in ("s1", "s2", "out"):
        np.testing.assert_array_equal(
            model.get_layer(name).indices.numpy(), loaded.get_layer(name).indices.numpy()
        )
    # Loaded optimizer state lets training continue.
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)


def test_layer_wider_than_a_tile(tmp_path, rng, small_tiles):
    """Storage in tile order; `kernel` canonical; row-major weights are reordered on load."""
    model = keras.Sequential(
        [keras.Input((20,)), SparseDense(11, epsilon=3, seed=0, activation="relu", name="s")]
    )
    layer = model.get_layer("s")
    check_indices(layer.indices.numpy(), (20, 11))
    kernel = layer.kernel
    flat = kernel.indices.numpy()[:, 0] * 11 + kernel.indices.numpy()[:, 1]
    assert np.all(np.diff(flat) > 0)  # TensorFlow's canonical order
    np.testing.assert_array_equal(tf.sparse.to_dense(kernel).numpy(), layer.to_dense_kernel())
    x = rng.standard_normal((8, 20)).astype("float32")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        expected, np.maximum(x @ layer.to_dense_kernel() + layer.bias.numpy(), 0), atol=1e-5
    )
    # A file written in row-major order (by an earlier version, or under a
    # wider tile) loads in tile order with the same predictions.
    order = np.argsort(flat_of(layer))
    layer.indices.assign(layer.indices.numpy()[order])
    layer.values.assign(layer.values.numpy()[order])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    check_indices(loaded.get_layer("s").indices.numpy(), (20, 11))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)


def test_widths_beyond_int32_indices_are_rejected():
    with pytest.raises(ValueError, match="`units` to be at most 2147483647"):
        SparseDense(2**31, epsilon=1).build((None, 4))
    with pytest.raises(ValueError, match="`input_dim` to be at most"):
        SparseDense(4, epsilon=1).build((None, 2**31))


def test_int64_indices_of_earlier_files_load(rng):
    """Weights saved with int64 indices (before int32 storage) load and predict the same."""
    layer = SparseDense(9, epsilon=3, seed=1)
    x = rng.standard_normal((5, 12)).astype("float32")
    expected = layer(x).numpy()
    store = {  # what a .keras file holds: trainable variables first
        "0": layer.values.numpy(),
        "1": layer.bias.numpy(),
        "2": layer.indices.numpy().astype(np.int64),
    }
    fresh = SparseDense(9, epsilon=3)
    fresh.build_from_config({"input_shape": (None, 12), "nnz": layer.nnz})  # as load_model
    fresh.load_own_variables(store)
    assert fresh.indices.dtype == "int32"
    np.testing.assert_array_equal(fresh.indices.numpy(), layer.indices.numpy())
    np.testing.assert_allclose(fresh(x).numpy(), expected, atol=1e-6)


def flat_of(layer):
    idx = layer.indices.numpy()
    return idx[:, 0] * layer.units + idx[:, 1]


BAD_ARGUMENTS = [
    ({"units": 0}, "units"),
    ({"units": -3}, "units"),
    ({"units": 2.5}, "units"),
    ({"units": True}, "units"),
    ({"units": "8"}, "units"),
    ({"units": 4, "epsilon": 0}, "epsilon"),
    ({"units": 4, "epsilon": -1.0}, "epsilon"),
    ({"units": 4, "epsilon": "10"}, "epsilon"),
    ({"units": 4, "density": 0.0}, "density"),
    ({"units": 4, "density": 1.5}, "density"),
    ({"units": 4, "density": -0.1}, "density"),
    ({"units": 4, "kernel_impl": "cuda"}, "kernel_impl"),
    ({"units": 4, "kernel_initializer": "orthogonal"}, "kernel_initializer"),
    ({"units": 4, "seed": 1.5}, "seed"),
]


@pytest.mark.parametrize("kwargs,name", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        SparseDense(**kwargs)
