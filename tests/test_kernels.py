"""Every kernel path against a dense NumPy reference, and recompilation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import SETEvolution, SparseDense, kernels
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


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("wide,padded", [(False, False), (True, False), (False, True)])
def test_deterministic_forward_is_bitwise_repeatable(request, impl, wide, padded):
    """`deterministic=True` (outside training): same inputs, same bits, every call.

    The CSR training forward (`transpose_a`) sums per-thread buffers in a
    scheduling-dependent order; the deterministic one must not, on a kernel
    big enough to be split among threads, in tiles, and padded.
    """
    if wide:
        request.getfixturevalue("small_tiles")
    n_in, n_out = (300, 40) if wide else (2000, 1500)
    indices, values, x, _, dense = _problem(n_in, n_out, 64, 10, seed=7)
    if padded:  # live entries first, then (-1, -1) with value 0
        indices = np.concatenate([indices, np.full((50, 2), -1, indices.dtype)])
        values = np.concatenate([values, np.zeros(50, np.float32)])

    @tf.function(input_signature=[tf.TensorSpec([None, n_in], tf.float32)])
    def forward(x):
        return kernels.sparse_matmul(
            impl, x, tf.constant(indices), tf.constant(values), n_in, n_out, padded, True
        )

    outputs = [forward(tf.constant(x)).numpy() for _ in range(6)]
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])
    np.testing.assert_allclose(outputs[0], x @ dense, rtol=1e-4, atol=1e-4)


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


# ---------------------------------------------------------------- padding


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("batch", [3, 20])
def test_padded_kernel_matches_dense_reference(impl, graph, batch):
    """Padding (index -1, value 0) after the live entries is ignored, its gradient is zero."""
    n_in, n_out, cap_in, cap_out = 23, 17, 29, 21
    indices, values, x, dy, dense = _problem(n_in, n_out, batch, 2, seed=batch)
    n, cap = len(indices), len(indices) + 13
    pad_idx = np.full((cap, 2), -1, np.int32)
    pad_idx[:n] = indices
    pad_val = np.zeros(cap, np.float32)
    pad_val[:n] = values
    # Padded inputs and output gradients are random too: nothing may read them.
    rng = np.random.default_rng(batch + 100)
    x_pad = np.concatenate([x, rng.standard_normal((batch, cap_in - n_in))], 1).astype("float32")
    dy_pad = np.concatenate([dy, rng.standard_normal((batch, cap_out - n_out))], 1)
    dy_pad = dy_pad.astype("float32")

    def step(x, values):
        with tf.GradientTape() as tape:
            tape.watch([x, values])
            y = kernels.sparse_matmul(
                impl, x, tf.constant(pad_idx), values, cap_in, cap_out, padded=True
            )
        return (y, *tape.gradient(y, [x, values], output_gradients=tf.constant(dy_pad)))

    fn = tf.function(step) if graph else step
    y, dx, dv = (t.numpy() for t in fn(tf.constant(x_pad), tf.constant(pad_val)))
    np.testing.assert_allclose(y[:, :n_out], x @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[:, n_out:], 0)
    np.testing.assert_allclose(dx[:, :n_in], dy @ dense.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dx[:, n_in:], 0)
    expected_dv = (x[:, indices[:, 0]] * dy[:, indices[:, 1]]).sum(0)
    np.testing.assert_allclose(dv[:n], expected_dv, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dv[n:], 0)


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("live", [0, 1, 40, 82, 83])
def test_padded_kernel_at_every_fill_matches_dense_reference(graph, live):
    """From no live connection to no padding left, a padded kernel gives the
    live kernel's product and gradients (the padding's own gradient zero)."""
    n_in, n_out, cap, batch = 37, 29, 83, 3
    rng = np.random.default_rng(live + 7)
    flat = np.sort(rng.choice(n_in * n_out, cap, replace=False))
    pad_idx = np.stack([flat // n_out, flat % n_out], 1).astype(np.int32)
    pad_idx[live:] = -1
    pad_val = rng.standard_normal(cap).astype(np.float32)
    pad_val[live:] = 0
    dense = np.zeros((n_in, n_out), np.float32)
    dense[pad_idx[:live, 0], pad_idx[:live, 1]] = pad_val[:live]
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    dy = rng.standard_normal((batch, n_out)).astype(np.float32)

    def step(x, values):
        with tf.GradientTape() as tape:
            tape.watch([x, values])
            y = kernels.sparse_matmul(
                "gather", x, tf.constant(pad_idx), values, n_in, n_out, padded=True
            )
        return (y, *tape.gradient(y, [x, values], output_gradients=tf.constant(dy)))

    fn = tf.function(step) if graph else step
    y, dx, dv = (t.numpy() for t in fn(tf.constant(x), tf.constant(pad_val)))
    np.testing.assert_allclose(y, x @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy @ dense.T, rtol=1e-5, atol=1e-5)
    expected_dv = (x[:, pad_idx[:live, 0]] * dy[:, pad_idx[:live, 1]]).sum(0)
    np.testing.assert_allclose(dv[:live], expected_dv, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dv[live:], 0)


@pytest.mark.parametrize("chunk", [0, 1, 7, 50, 83, 84, 1000])
@pytest.mark.parametrize("live", [0, 1, 6, 7, 8, 49, 50, 51, 82, 83])
def test_padded_loop_over_chunks_is_the_live_kernel_bitwise(chunk, live):
    """The padded forward and input-gradient programs loop over the live
    prefix in chunks: whatever the chunk size (one entry, one that does not
    divide the storage, so that the last chunk is moved back over entries
    already summed, the whole storage, more than it) and wherever the live
    prefix ends (at, before, after a chunk boundary, nowhere, at the end),
    they give bitwise the live kernel's sums; as does one pass over the
    whole storage (chunk 0). (Chunks of one entry are only
    close: XLA rewrites a one-entry scatter, and its multiply-add rounds
    differently; `kernels.CHUNK` is thousands.)"""
    n_in, n_out, cap, batch = 37, 29, 83, 2
    rng = np.random.default_rng(chunk * 100 + live)
    flat = np.sort(rng.choice(n_in * n_out, cap, replace=False))
    indices = np.stack([flat // n_out, flat % n_out], 1).astype(np.int32)
    values = rng.standard_normal(cap).astype(np.float32)
    pad_idx, pad_val = indices.copy(), values.copy()
    pad_idx[live:], pad_val[live:] = -1, 0
    x = tf.constant(rng.standard_normal((batch, n_in)).astype(np.float32))
    dy = tf.constant(rng.standard_normal((batch, n_out)).astype(np.float32))
    live_kernel = tf.constant(indices[:live]), tf.constant(values[:live])
    padded = tf.constant(pad_idx), tf.constant(pad_val)
    y = kernels._gather_forward(x, *padded, n_out, True, chunk)
    dx = kernels._gather_input_grad(*padded, dy, n_in, True, chunk)
    if chunk > 1:
        np.testing.assert_array_equal(y.numpy(), kernels._gather_forward(x, *live_kernel, n_out))
        np.testing.assert_array_equal(
            dx.numpy(), kernels._gather_input_grad(*live_kernel, dy, n_in)
        )
    dense = np.zeros((n_in, n_out), np.float32)
    dense[indices[:live, 0], indices[:live, 1]] = values[:live]
    np.testing.assert_allclose(y.numpy(), x.numpy() @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), dy.numpy() @ dense.T, rtol=1e-5, atol=1e-5)


def test_small_storage_is_read_whole_large_storage_looped():
    assert kernels.chunk_for(kernels.LOOP_MIN_CAPACITY - 1) == 0
    assert kernels.chunk_for(kernels.LOOP_MIN_CAPACITY) == kernels.CHUNK
    assert kernels.LOOP_MIN_CAPACITY >= kernels.CHUNK


def test_padded_loop_stops_at_the_padding():
    """The padded programs' work follows the live connections, not the
    storage: the loop runs one step per chunk that begins with a live entry
    (a live entry planted after the padding, which the layer never stores,
    is not reached)."""
    n_in, n_out, cap = 10, 10, 40
    indices = np.full((cap, 2), -1, np.int32)
    values = np.zeros(cap, np.float32)
    indices[:5] = [[i, i] for i in range(5)]
    values[:5] = 1.0
    indices[30], values[30] = [7, 7], 1.0  # beyond the first chunk of padding
    x = tf.constant(np.ones((1, n_in), np.float32))
    y = kernels._gather_forward(x, tf.constant(indices), tf.constant(values), n_out, True, 10)
    np.testing.assert_array_equal(y.numpy()[0], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_padded_programs_are_the_live_kernels_bitwise():
    """The padded XLA programs add the live entries in the live kernel's order
    and nothing else, so training numerics do not depend on the padding."""
    n_in, n_out, batch = 300, 200, 2
    indices, values, x, dy, _ = _problem(n_in, n_out, batch, 10, seed=3)
    n, extra = len(indices), len(indices) // 3 + 5
    x, dy = tf.constant(x), tf.constant(dy)
    live = tf.constant(indices.astype(np.int32)), tf.constant(values)
    padded = (
        tf.constant(np.concatenate([indices, np.full((extra, 2), -1)]).astype(np.int32)),
        tf.constant(np.concatenate([values, np.zeros(extra, np.float32)])),
    )
    plain = (
        kernels._gather_forward(x, *live, n_out),
        kernels._gather_input_grad(*live, dy, n_in),
        kernels._gather_values_grad(x, live[0], dy),
    )
    with_padding = (
        kernels._gather_forward(x, *padded, n_out, True),
        kernels._gather_input_grad(*padded, dy, n_in, True),
        kernels._gather_values_grad(x, padded[0], dy, True)[:n],
    )
    for a, b in zip(plain, with_padding, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
