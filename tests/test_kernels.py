"""Every kernel path against a dense NumPy reference, and recompilation."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import NeuronPruning, SETEvolution, SparseDense, kernels
from keras_npset.topology import erdos_renyi_indices

PATHS = ("gather", "csr", "sparse_dense_matmul", "auto")


def _problem(n_in, n_out, batch, epsilon, seed):
    rng = np.random.default_rng(seed)
    indices = erdos_renyi_indices(n_in, n_out, rng, epsilon=epsilon)
    values = rng.standard_normal(len(indices)).astype(np.float32)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    dy = rng.standard_normal((batch, n_out)).astype(np.float32)
    dense = np.zeros((n_in, n_out), np.float32)
    dense[indices[:, 0], indices[:, 1]] = values
    return indices, values, x, dy, dense


def _run(impl, indices, values, x, dy, n_in, n_out, graph):
    def step(x, values):
        with tf.GradientTape() as tape:
            tape.watch([x, values])
            y = kernels.sparse_matmul(impl, x, tf.constant(indices), values, n_in, n_out)
            loss = tf.reduce_sum(y * dy)
        return (y, *tape.gradient(loss, [x, values]))

    if graph:  # Unknown batch size, as inside Keras's fit.
        step = tf.function(
            step,
            input_signature=[
                tf.TensorSpec([None, n_in], tf.float32),
                tf.TensorSpec([None], tf.float32),
            ],
        )
    return [t.numpy() for t in step(tf.constant(x), tf.constant(values))]


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("batch", [1, 2, 15, 16, 33])
@pytest.mark.parametrize("graph", [False, True])
def test_matches_dense_reference(impl, batch, graph):
    n_in, n_out = 70, 50
    indices, values, x, dy, dense = _problem(n_in, n_out, batch, 3, seed=batch)
    y, dx, dvalues = _run(impl, indices, values, x, dy, n_in, n_out, graph)
    np.testing.assert_allclose(y, x @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy @ dense.T, rtol=1e-5, atol=1e-5)
    expected = (x.T @ dy)[indices[:, 0], indices[:, 1]]
    np.testing.assert_allclose(dvalues, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("batch", [2, 33])
@pytest.mark.parametrize("graph", [False, True])
def test_kernels_wider_than_a_tile_match_dense_reference(small_tiles, impl, batch, graph):
    # 50 columns in tiles of 3: 17 tiles, the last one 2 wide; the CSR path
    # multiplies tile by tile.
    n_in, n_out = 70, 50
    indices, values, x, dy, dense = _problem(n_in, n_out, batch, 3, seed=batch + 1)
    assert np.any(np.diff(indices[:, 0]) < 0)  # really not row-major
    y, dx, dvalues = _run(impl, indices, values, x, dy, n_in, n_out, graph)
    np.testing.assert_allclose(y, x @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy @ dense.T, rtol=1e-5, atol=1e-5)
    expected = (x.T @ dy)[indices[:, 0], indices[:, 1]]
    np.testing.assert_allclose(dvalues, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", ["gather", "csr", "auto"])
def test_paths_agree_with_reference_path_on_a_wide_layer(impl):
    n_in, n_out = 2000, 1500
    indices, values, x, dy, _ = _problem(n_in, n_out, 20, 10, seed=3)
    ref = _run("sparse_dense_matmul", indices, values, x, dy, n_in, n_out, graph=True)
    got = _run(impl, indices, values, x, dy, n_in, n_out, graph=True)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_empty_rows_and_columns():
    indices = np.array([[0, 3], [0, 4], [5, 0]], np.int64)
    values = np.array([1.0, -2.0, 0.5], np.float32)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    dy = np.ones((2, 7), np.float32)
    dense = np.zeros((6, 7), np.float32)
    dense[indices[:, 0], indices[:, 1]] = values
    for impl in PATHS:
        y, dx, _ = _run(impl, indices, values, x, dy, 6, 7, graph=True)
        np.testing.assert_allclose(y, x @ dense, err_msg=impl)
        np.testing.assert_allclose(dx, dy @ dense.T, err_msg=impl)


def test_unknown_kernel_impl():
    with pytest.raises(ValueError, match="kernel_impl"):
        SparseDense(4, kernel_impl="dense")


def test_supports_jit_only_where_xla_can_compile():
    for impl in ("auto", "gather"):
        assert SparseDense(4, kernel_impl=impl).supports_jit
    for impl in ("csr", "sparse_dense_matmul"):
        assert not SparseDense(4, kernel_impl=impl).supports_jit


@pytest.mark.parametrize("batch", [2, 20])
def test_auto_under_xla_matches_reference(batch):
    n_in, n_out = 70, 50
    indices, values, x, dy, dense = _problem(n_in, n_out, batch, 3, seed=7)

    @tf.function(jit_compile=True)
    def step(x, values):
        with tf.GradientTape() as tape:
            tape.watch([x, values])
            y = kernels.sparse_matmul("auto", x, tf.constant(indices), values, n_in, n_out)
            loss = tf.reduce_sum(y * dy)
        return (y, *tape.gradient(loss, [x, values]))

    y, dx, dvalues = (t.numpy() for t in step(tf.constant(x), tf.constant(values)))
    np.testing.assert_allclose(y, x @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy @ dense.T, rtol=1e-5, atol=1e-5)
    expected = (x.T @ dy)[indices[:, 0], indices[:, 1]]
    np.testing.assert_allclose(dvalues, expected, rtol=1e-5, atol=1e-4)


def _traces():
    fns = (kernels._gather_forward, kernels._gather_input_grad, kernels._gather_values_grad)
    return [f.experimental_get_tracing_count() for f in fns]


@pytest.mark.parametrize("impl,jit", [("gather", "auto"), ("auto", "auto"), ("auto", True)])
def test_set_step_does_not_retrace(impl, jit):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((40,)),
            SparseDense(30, epsilon=3, activation="relu", kernel_impl=impl),
            SparseDense(2, epsilon=3, activation="softmax", kernel_impl=impl),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit,
    )
    x = np.random.rand(32, 40).astype("float32")
    y = np.random.randint(0, 2, 32)
    set_cb = SETEvolution(zeta=0.3, seed=1)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[set_cb])
    before_indices = model.layers[0].indices.numpy().copy()
    traces, train_fn = _traces(), model.train_function
    set_cb.evolve()
    assert not np.array_equal(model.layers[0].indices.numpy(), before_indices)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[set_cb])
    assert _traces() == traces
    assert model.train_function is train_fn


# ---------------------------------------------------------------- shape buckets


def test_bucket_sizes_cover_and_bound_the_padding():
    bucket_size = kernels.bucket_size
    for n in [0, 1, 8, 9, 100, 1000, 6553, 294_235, 12_000_000]:
        b8, b1 = bucket_size(n, 8), bucket_size(n, 1)
        assert b8 >= n and b1 >= n
        assert b8 <= max(8, n * 2 ** (1 / 8) + 1)
        assert b1 <= max(8, 2 * n)
    # Pruning 7000 -> 1320 in 41 steps of 4% meets few distinct buckets.
    widths, n = set(), 7000
    for _ in range(41):
        n -= int(0.04 * n)
        widths.add(bucket_size(n, 1))
    assert len(widths) <= 3


@pytest.mark.parametrize("impl", ["gather", "auto", "csr"])
def test_bucketed_path_is_exact(impl):
    rng = np.random.default_rng(7)
    layer = SparseDense(37, epsilon=3, kernel_impl=impl, seed=1)
    x = tf.constant(rng.standard_normal((5, 53)).astype("float32"))
    layer(x)
    results = []
    for bucket_shapes in (False, True):
        layer.bucket_shapes = bucket_shapes
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y**2)
        results.append([y, *tape.gradient(loss, [x, layer.values])])
    for plain, padded in zip(*results, strict=True):
        if impl == "csr":
            # TF's multi-threaded CSR kernel is not bitwise deterministic between calls.
            np.testing.assert_allclose(plain.numpy(), padded.numpy(), rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(plain.numpy(), padded.numpy())


def test_pruning_events_reuse_compiled_programs():
    """After the first resize, consecutive pruning events mostly hit cached shapes."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            SparseDense(60, activation="relu", kernel_impl="gather", seed=0),
            SparseDense(60, activation="relu", kernel_impl="gather", seed=1),
            SparseDense(3, kernel_impl="gather", seed=2),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.default_rng(0).standard_normal((8, 64)).astype("float32")
    y = np.zeros((8, 3), "float32")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    count = kernels._gather_forward.experimental_get_tracing_count
    before, at = count(), {}
    # Counted before the last event (epoch 10), which returns to exact shapes.
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: at.setdefault(epoch, count())
    )
    model.fit(
        x,
        y,
        epochs=12,
        batch_size=8,
        verbose=0,
        callbacks=[NeuronPruning(alpha=0.04, start=0, epochs=10, seed=0), record],
    )
    traces = at[9] - before
    # 10 events x 3 layers would be 30 new programs without buckets.
    assert traces <= 12, traces
    # The last event compiles each layer once more, at its exact shape.
    assert count() - at[9] <= 3
