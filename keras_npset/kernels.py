"""Products `x @ K` of a dense batch with a sparse kernel given as indices + values.

Each implementation takes `x` of shape `[batch, n_in]`, `indices` `[nnz, 2]`
int32 (or int64) `(row, col)` pairs in tile order (`topology.order_keys`: row-major
within tiles of `topology.TILE_COLS` columns), `values` `[nnz]` and returns
`[batch, n_out]`. Gradients flow to `x` and `values` only; no dense
`(n_in, n_out)` tensor is ever built. Products accumulate in float32 whatever
the compute dtype.

- `"sparse_dense_matmul"`: TensorFlow's `tf.sparse.sparse_dense_matmul`, the
  reference path. It has no XLA kernel.
- `"gather"`: gather the input columns by connection, scale by the values and
  `unsorted_segment_sum` them into the outputs. It compiles with XLA, which
  fuses the gather, product and scatter; with a custom gradient that reuses the
  gathered inputs. Fastest at small batches.
- `"csr"`: the kernel converted to a CSR matrix each call, one per column
  tile (`SparseTensorToCSRSparseMatrix`, linear in nnz for row-major indices) and
  multiplied by TensorFlow's multi-threaded `SparseMatrixMatMul`, forward and
  for the input gradient; the gradient of the values is the XLA gather
  product of the `"gather"` path. Fastest from a batch of about 16. No XLA.
  Its training forward is not bitwise deterministic (see "Determinism").
- `"auto"`: inside an XLA-compiled function (a model compiled with
  `jit_compile=True`), `"gather"`; otherwise `"gather"` below
  `AUTO_CSR_MIN_BATCH` rows and `"csr"` from there, chosen while tracing
  when the batch size is static (`data_order.epoch_batches` makes it so when
  every batch is full) and at run time otherwise (a Keras `fit` on arrays
  traces with an unknown batch size). The threshold is the crossover
  measured by `benchmarks/bench_step.py` on a 2-core CPU.

Determinism. `SparseMatrixMatMul` with `transpose_a=True` (the CSR
training forward, `x @ K = (K^T x^T)^T` on the row-major `K`) gives each
worker thread its own output buffer and sums the buffers at the end; which
rows of `K` a thread handles depends on scheduling, so the order of the
float32 additions, and the last bits of the result, vary from call to call
(about 1e-7 relative). Without `transpose_a` each output row is one thread's
sum, always in the same order. `deterministic=True` (the layer passes it
outside training: `predict`, `evaluate`, a plain call) therefore first
transposes the CSR matrix (`SparseMatrixTranspose`, a counting sort, linear
in nnz) and multiplies untransposed: bitwise-repeatable, and about as fast on the
2-core CPU. Training keeps the transposed product, so training numerics are
those the experiments were run with. The gather and reference paths are
deterministic either way.

Shapes depend only on `nnz` and the widths, so SET, which keeps nnz, never
retraces or recompiles any of these. Neuron pruning changes them; it keeps a
layer's storage at a capacity and pads (`padded=True`), so that most events
change neither (see `keras_npset.surgery`). A resizable layer
(`SparseDense.set_resizable`) passes its widths as scalar tensors: a traced
function then serves every width, and XLA compiles each program once per
new shape (a width is a compile-time constant of the program).
"""

from __future__ import annotations

import tensorflow as tf

from keras_npset import _keras, topology
from keras_npset.choices import KERNEL_IMPLEMENTATIONS as IMPLEMENTATIONS
from keras_npset.choices import XLA_KERNEL_IMPLEMENTATIONS
from keras_npset.validation import check_choice

JIT_COMPATIBLE = {impl: impl in XLA_KERNEL_IMPLEMENTATIONS for impl in IMPLEMENTATIONS}
# Smallest batch for which "auto" uses the CSR path (see the module docstring).
AUTO_CSR_MIN_BATCH = 16
# Connections per step of the padded XLA programs' loop over the live prefix
# (see "Padding"); measured on the paper's 5000-unit layers at batch 2.
CHUNK = 8192
# Smallest padded storage (connections) that loops over its live prefix
# rather than reading all of it: 10,000 connections (Prostate_GE's output
# layer) stepped in 0.10 ms at full storage and 0.07 ms at a fifth live read
# whole, against 0.13 and 0.11 ms looped, and took about 150 ms more to
# compile (`benchmarks/README.md`, "Padded kernels").
LOOP_MIN_CAPACITY = 4 * CHUNK


def resolve(kernel_impl: str) -> str:
    """Check `kernel_impl` and return it."""
    return check_choice("kernel_impl", kernel_impl, IMPLEMENTATIONS)


def _dense_shape(n_in, n_out):
    """`[n_in, n_out]` as int64, the widths being ints or (for a resizable layer) scalar tensors."""
    # Stacked after the casts, so that shape inference sees a rank-2 shape.
    return tf.stack([tf.cast(n_in, tf.int64), tf.cast(n_out, tf.int64)])


def sparse_dense_matmul(x, indices, values, n_in: int, n_out: int):
    """`x @ K` through `tf.sparse.sparse_dense_matmul` (the reference path)."""
    kernel = tf.SparseTensor(
        tf.cast(indices, tf.int64), values, dense_shape=_dense_shape(n_in, n_out)
    )
    # K^T @ x^T keeps the sparse operand on the left, where TF's kernel lives,
    # without reordering the row-major indices into a transposed tensor.
    out_t = tf.sparse.sparse_dense_matmul(kernel, x, adjoint_a=True, adjoint_b=True)
    return tf.transpose(out_t)


# The XLA-compiled pieces. Inputs are laid out [nnz, batch] after the gather so
# that each connection reads one contiguous row of x^T.
#
# Padding. A layer that neuron pruning keeps at a capacity larger than its live
# kernel (see `SparseDense.padded`) stores its live connections first and
# padding after them: index (-1, -1), value 0. With `padded=True` every path
# treats such entries as absent. The forward and input-gradient programs of
# large storage (`chunk_for`) then loop over the live prefix in chunks of
# `CHUNK` connections (`_live_chunks`), stopping at the first chunk that
# begins with padding: their cost follows the live connections as pruning
# removes them, in one program for the whole phase (a step that read the
# whole storage cost 0.76 ms at an eighth of it live against 1.06 ms full,
# looped 0.45 and 0.87: `benchmarks/bench_padding.py`). Smaller storage, and
# every chunk, is read whole: padding is segment -1, which a scatter drops,
# and reads row 0 where it gathers. The values' gradient (one product per
# stored connection) reads the whole storage, zeroed at the padding. The live
# entries are summed in the same order as by the live kernel alone, so a
# padded product is bitwise the live one. (Pointing the padding at (0, 0)
# with value 0 instead made every padded entry add into the same output row:
# a chain of dependent additions that made a padded step slower the emptier
# its storage, `benchmarks/README.md`, "Padded kernels".) The CSR and
# reference paths multiply only the live prefix. The padding receives exactly
# zero gradient, so it stays zero under any optimizer.
# The three XLA programs are plain TensorFlow code without tensor-dependent Python
# control flow (`padded` is a Python bool), so AutoGraph has nothing to convert:
# `autograph=False` saves its source transformation at every trace, 0.3-0.6 s of
# the first epoch of the paper's three-layer MLPs; the traced graphs are the same.
def _gather_rows(indices, padded):
    """Rows and columns to gather by: padding (-1) reads row 0, to be dropped."""
    return tf.maximum(indices, 0) if padded else indices


def _live_chunks(indices, body, init, chunk):
    """Run `body(start, first, size, state)` over the live prefix of `indices`, chunk by chunk.

    Chunks are `chunk` entries long (or the whole storage, if shorter); the
    loop stops at the first chunk that begins with padding, so the work
    follows the live connections, not the storage, and no new program is
    needed as they shrink. `start` is where the chunk is read (the last one
    is moved back to end with the storage) and `first` the first position
    not yet done by an earlier chunk.
    """
    cap = tf.shape(indices)[0]
    size = tf.minimum(chunk, cap)

    def live(c, _):
        begin = tf.minimum(c * size, cap - 1)
        return tf.logical_and(c * size < cap, indices[begin, 0] >= 0)

    def step(c, state):
        first = c * size
        start = tf.minimum(first, cap - size)
        return c + 1, body(start, first, size, state)

    return tf.while_loop(live, step, [tf.constant(0), init])[1]


def _chunked_scatter(source_t, indices, values, by, to, n_rows, chunk):
    """`unsorted_segment_sum` of the live prefix, `source_t` rows gathered by column `by`."""

    def body(start, first, size, out):
        idx = tf.slice(indices, tf.stack([start, 0]), tf.stack([size, 2]))
        val = tf.slice(values, tf.reshape(start, [1]), tf.reshape(size, [1]))
        rows = tf.gather(source_t, tf.maximum(idx[:, by], 0))
        # Entries an earlier chunk added, and padding, get segment -1: dropped.
        done = tf.range(size) + start < first
        seg = tf.where(done, tf.constant(-1, idx.dtype), idx[:, to])
        return tf.tensor_scatter_nd_add(out, seg[:, None], rows * tf.cast(val, tf.float32)[:, None])

    init = tf.zeros(tf.stack([n_rows, tf.shape(source_t)[1]]), tf.float32)
    return _live_chunks(indices, body, init, chunk)


@tf.function(jit_compile=True, autograph=False)
def _gather_forward(x, indices, values, n_out, padded=False, chunk=CHUNK):
    x_t = tf.transpose(tf.cast(x, tf.float32))
    if padded and chunk:
        out_t = _chunked_scatter(x_t, indices, values, 0, 1, n_out, chunk)
    else:
        rows = _gather_rows(indices[:, 0], padded)
        gathered = tf.gather(x_t, rows) * tf.cast(values, tf.float32)[:, None]
        out_t = tf.math.unsorted_segment_sum(gathered, indices[:, 1], n_out)
    return tf.cast(tf.transpose(out_t), x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _gather_input_grad(indices, values, dy, n_in, padded=False, chunk=CHUNK):
    # A program of its own, apart from the values' gradient: a graph drops it
    # where nothing uses the input gradient (the first layer), and the two
    # can run on different cores.
    dy_t = tf.transpose(tf.cast(dy, tf.float32))
    if padded and chunk:
        dx_t = _chunked_scatter(dy_t, indices, values, 1, 0, n_in, chunk)
    else:
        dx_t = tf.math.unsorted_segment_sum(
            tf.gather(dy_t, _gather_rows(indices[:, 1], padded))
            * tf.cast(values, tf.float32)[:, None],
            indices[:, 0],
            n_in,
        )
    return tf.cast(tf.transpose(dx_t), dy.dtype)


@tf.function(jit_compile=True, autograph=False)
def _gather_values_grad(x, indices, dy, padded=False):
    # One product per stored connection, padding included (it reads row 0
    # and is zeroed): a loop over the live prefix, as above, measured three
    # times slower here at full storage and no faster at a fifth
    # (`benchmarks/README.md`, "Padded kernels").
    gather_at = _gather_rows(indices, padded)
    x_t = tf.transpose(tf.cast(x, tf.float32))
    dy_t = tf.transpose(tf.cast(dy, tf.float32))
    grad = tf.reduce_sum(tf.gather(x_t, gather_at[:, 0]) * tf.gather(dy_t, gather_at[:, 1]), axis=1)
    return tf.where(indices[:, 0] >= 0, grad, tf.zeros_like(grad)) if padded else grad


def _live_prefix(indices, values, padded):
    """The live connections (a prefix of a padded kernel), for the non-XLA kernels."""
    if not padded:
        return indices, values
    n = tf.reduce_sum(tf.cast(indices[:, 0] >= 0, tf.int32))
    return indices[:n], values[:n]


def _backward(x, indices, values, dy, n_in, padded, chunk=CHUNK):
    dx = _gather_input_grad(indices, values, dy, n_in, padded, chunk)
    d_values = _gather_values_grad(x, indices, dy, padded)
    return tf.cast(dx, x.dtype), tf.cast(d_values, values.dtype)


def _csr(indices, values, n_in, n_out):
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=tf.cast(indices, tf.int64),
        values=tf.cast(values, tf.float32),
        dense_shape=_dense_shape(n_in, n_out),
    )


def _column_tiles(indices, values, n_in, n_out):
    """`(csr, start, width)` for each column tile of the kernel.

    CSR conversion needs row-major order, which tile order is within each
    tile: a kernel wider than `topology.TILE_COLS` is cut at the tile
    boundaries (found by counting each tile's connections) into row-major
    sub-kernels of shape `(n_in, width)`, whose products are concatenated
    (forward) or summed (input gradient).
    """
    tile = topology.TILE_COLS
    if not isinstance(n_out, int) or n_out <= tile:
        # A width given as a tensor is a resizable layer's, at most one tile.
        return [(_csr(indices, values, n_in, n_out), 0, n_out)]
    n_tiles = -(-n_out // tile)
    counts = tf.math.bincount(
        tf.cast(indices[:, 1] // tile, tf.int32),
        minlength=n_tiles,
        maxlength=n_tiles,
        dtype=tf.int64,
    )
    ends = tf.cumsum(counts)
    tiles = []
    for t in range(n_tiles):
        begin, end = ends[t] - counts[t], ends[t]
        start, width = t * tile, min(tile, n_out - t * tile)
        local = indices[begin:end] - tf.constant([0, start], indices.dtype)
        tiles.append((_csr(local, values[begin:end], n_in, width), start, width))
    return tiles


def _csr_forward(x, indices, values, n_in, n_out, padded=False, deterministic=False):
    # x @ K = (K^T x^T)^T, in one call per tile; with `deterministic`, K^T
    # as a CSR matrix of its own (see "Determinism").
    indices, values = _live_prefix(indices, values, padded)
    x32 = tf.cast(x, tf.float32)
    tiles = _column_tiles(indices, values, n_in, n_out)
    if deterministic:
        ys = [
            tf.raw_ops.SparseMatrixMatMul(
                a=tf.raw_ops.SparseMatrixTranspose(input=csr, type=tf.float32),
                b=x32,
                transpose_b=True,
                transpose_output=True,
            )
            for csr, _, _ in tiles
        ]
    else:
        ys = [
            tf.raw_ops.SparseMatrixMatMul(
                a=csr, b=x32, transpose_a=True, transpose_b=True, transpose_output=True
            )
            for csr, _, _ in tiles
        ]
    return tf.cast(ys[0] if len(ys) == 1 else tf.concat(ys, axis=1), x.dtype)


def _csr_backward(x, indices, values, dy, n_in, n_out, padded=False):
    # dy @ K^T = (K dy^T)^T: each row-major CSR tile as it is.
    dy32 = tf.cast(dy, tf.float32)
    live_indices, live_values = _live_prefix(indices, values, padded)
    dx = tf.add_n(
        [
            tf.raw_ops.SparseMatrixMatMul(
                a=csr,
                b=dy32[:, start : start + width],
                transpose_b=True,
                transpose_output=True,
            )
            for csr, start, width in _column_tiles(live_indices, live_values, n_in, n_out)
        ]
    )
    d_values = _gather_values_grad(x, indices, dy, padded)
    return tf.cast(dx, x.dtype), tf.cast(d_values, values.dtype)


def gather_matmul(
    x,
    indices,
    values,
    n_in: int,
    n_out: int,
    padded: bool = False,
    deterministic: bool = False,
    chunk: int = CHUNK,
):
    """`x @ K` as gather, scale and segment-sum, compiled with XLA.

    The forward and backward passes are each an XLA-compiled function, so the
    path is compiled whether or not the model is (Keras's
    `jit_compile="auto"` leaves XLA off on CPU-only machines). Deterministic
    whatever `deterministic` says.
    """

    @tf.custom_gradient
    def _product(x, values):
        def grad(dy):
            return _backward(x, indices, values, dy, n_in, padded, chunk)

        # Cut from any tape: the gradient is `grad`, and a recorded while
        # loop (the padded programs) would not compile.
        y = _gather_forward(
            tf.stop_gradient(x), indices, tf.stop_gradient(values), n_out, padded, chunk
        )
        return y, grad

    return _product(x, values)


def csr_matmul(
    x,
    indices,
    values,
    n_in: int,
    n_out: int,
    padded: bool = False,
    deterministic: bool = False,
    chunk: int = CHUNK,
):
    """`x @ K` with TensorFlow's CSR sparse-matrix kernels (see module docstring).

    `chunk` is accepted for a common signature: the CSR products take the
    live prefix, and the values' gradient reads the whole storage.
    """

    @tf.custom_gradient
    def _product(x, values):
        def grad(dy):
            return _csr_backward(x, indices, values, dy, n_in, n_out, padded)

        return _csr_forward(x, indices, values, n_in, n_out, padded, deterministic), grad

    return _product(x, values)


def auto_matmul(
    x,
    indices,
    values,
    n_in: int,
    n_out: int,
    padded: bool = False,
    deterministic: bool = False,
    chunk: int = CHUNK,
):
    """`"gather"` under XLA or below `AUTO_CSR_MIN_BATCH` rows of `x`, else `"csr"`."""
    if _keras.in_xla_context():
        return gather_matmul(x, indices, values, n_in, n_out, padded, chunk=chunk)
    batch = x.shape[0]
    if batch is not None:  # Known while tracing: choose once.
        impl = csr_matmul if batch >= AUTO_CSR_MIN_BATCH else gather_matmul
        return impl(x, indices, values, n_in, n_out, padded, deterministic, chunk)

    @tf.custom_gradient
    def _product(x, values):
        use_csr = tf.shape(x)[0] >= AUTO_CSR_MIN_BATCH

        def grad(dy):
            return tf.cond(
                use_csr,
                lambda: _csr_backward(x, indices, values, dy, n_in, n_out, padded),
                lambda: _backward(x, indices, values, dy, n_in, padded, chunk),
            )

        y = tf.cond(
            use_csr,
            lambda: _csr_forward(x, indices, values, n_in, n_out, padded, deterministic),
            lambda: _gather_forward(x, indices, values, n_out, padded, chunk),
        )
        return y, grad

    return _product(x, values)


_FUNCTIONS = {
    "auto": auto_matmul,
    "gather": gather_matmul,
    "csr": csr_matmul,
    "sparse_dense_matmul": sparse_dense_matmul,
}


def sparse_matmul(
    kernel_impl: str,
    x,
    indices,
    values,
    n_in: int,
    n_out: int,
    padded: bool = False,
    deterministic: bool = False,
    chunk: int = CHUNK,
):
    """Dispatch to the implementation named by `kernel_impl`.

    `padded=True`: entries with index (-1, -1) after the live ones are
    padding, to be ignored (see "Padding" above); layers that neuron pruning
    keeps at a larger capacity pass it. `deterministic=True`: a forward
    pass whose result is bitwise the same at every call (see
    "Determinism"); the layer passes it outside training. `chunk`:
    connections per step of the padded XLA programs' loop over the live
    prefix, 0 for one pass over the whole storage (`chunk_for` chooses by
    the storage's size).
    """
    if kernel_impl == "sparse_dense_matmul":
        return sparse_dense_matmul(x, *_live_prefix(indices, values, padded), n_in, n_out)
    impl = _FUNCTIONS[resolve(kernel_impl)]
    return impl(x, indices, values, n_in, n_out, padded, deterministic, chunk)


def chunk_for(capacity: int) -> int:
    """The `chunk` for padded storage of `capacity` connections.

    `CHUNK`, or 0 (one pass over the storage) below `LOOP_MIN_CAPACITY`,
    where the loop's steps cost more than the padding it skips and its
    programs take longer to compile (see "Padding").
    """
    return CHUNK if capacity >= LOOP_MIN_CAPACITY else 0
