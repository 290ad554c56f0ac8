"""Products `x @ K` of a dense batch with a sparse kernel given as indices + values.

Each implementation takes `x` of shape `[batch, n_in]`, `indices` `[nnz, 2]`
int64 `(row, col)` pairs, `values` `[nnz]` and returns `[batch, n_out]`.
Gradients flow to `x` and `values` only; no dense `(n_in, n_out)` tensor is
ever built.

- `"sparse_dense_matmul"`: TensorFlow's `tf.sparse.sparse_dense_matmul`, the
  reference path. It has no XLA kernel.
- `"gather"`: gather the input columns by connection, scale by the values and
  `unsorted_segment_sum` them into the outputs. It compiles with XLA, which
  fuses the gather, product and scatter; with a custom gradient that reuses the
  gathered inputs.
"""

from __future__ import annotations

import tensorflow as tf

IMPLEMENTATIONS = ("auto", "gather", "sparse_dense_matmul")
JIT_COMPATIBLE = {"gather": True, "sparse_dense_matmul": False}


def resolve(kernel_impl: str) -> str:
    """The concrete implementation behind `kernel_impl` ("auto" -> "gather")."""
    if kernel_impl not in IMPLEMENTATIONS:
        raise ValueError(
            f"Expected `kernel_impl` to be one of {IMPLEMENTATIONS}. "
            f"Received: kernel_impl={kernel_impl!r}"
        )
    return "gather" if kernel_impl == "auto" else kernel_impl


def sparse_dense_matmul(x, indices, values, n_in: int, n_out: int):
    """`x @ K` through `tf.sparse.sparse_dense_matmul` (the reference path)."""
    kernel = tf.SparseTensor(indices, values, dense_shape=[n_in, n_out])
    # K^T @ x^T keeps the sparse operand on the left, where TF's kernel lives,
    # without reordering the row-major indices into a transposed tensor.
    out_t = tf.sparse.sparse_dense_matmul(kernel, x, adjoint_a=True, adjoint_b=True)
    return tf.transpose(out_t)


@tf.function(jit_compile=True)
def _gather_forward(x, rows, cols, values, n_out):
    gathered = tf.gather(tf.transpose(x), rows)  # [nnz, batch]
    return tf.transpose(tf.math.unsorted_segment_sum(gathered * values[:, None], cols, n_out))


@tf.function(jit_compile=True)
def _gather_backward(x, rows, cols, values, dy):
    x_t = tf.transpose(x)  # [n_in, batch]
    dy_t = tf.gather(tf.transpose(dy), cols)  # [nnz, batch]
    d_values = tf.reduce_sum(tf.gather(x_t, rows) * dy_t, axis=1)
    dx_t = tf.math.unsorted_segment_sum(dy_t * values[:, None], rows, tf.shape(x_t)[0])
    return tf.transpose(dx_t), d_values


def gather_matmul(x, indices, values, n_in: int, n_out: int):
    """`x @ K` as gather, scale and segment-sum, compiled with XLA.

    The forward and backward passes are each an XLA-compiled function, so the
    path is compiled whether or not the model is (Keras's
    `jit_compile="auto"` leaves XLA off on CPU-only machines). Shapes depend
    only on `nnz` and the widths, so SET, which keeps nnz, never recompiles.
    """
    del n_in
    rows = indices[:, 0]
    cols = indices[:, 1]

    @tf.custom_gradient
    def _product(x, values):
        def grad(dy):
            return _gather_backward(x, rows, cols, values, dy)

        return _gather_forward(x, rows, cols, values, n_out), grad

    return _product(x, values)


_FUNCTIONS = {"gather": gather_matmul, "sparse_dense_matmul": sparse_dense_matmul}


def sparse_matmul(kernel_impl: str, x, indices, values, n_in: int, n_out: int):
    """Dispatch to the implementation named by `kernel_impl`."""
    return _FUNCTIONS[resolve(kernel_impl)](x, indices, values, n_in, n_out)
