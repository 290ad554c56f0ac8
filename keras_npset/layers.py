"""`SparseDense`: a densely-connected layer whose kernel is truly sparse."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import activations, constraints, initializers, regularizers

from keras_npset import _keras, kernels, topology
from keras_npset.choices import KERNEL_INITIALIZERS
from keras_npset.choices import VARIANCE_SCALING_INITIALIZERS as _VALUE_INITIALIZERS
from keras_npset.optimizer_state import carry, make_resizable, read, set_value
from keras_npset.topology import erdos_renyi_indices
from keras_npset.validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_seed,
    is_int,
)

# Widest layer (inputs or units) the int32 index storage can address.
MAX_WIDTH = 2**31 - 1


def _get(name, getter, value):
    """`getter(value)` (Keras's `activations.get` & co.) with a Keras-style error."""
    try:
        return getter(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"Could not interpret `{name}`: {e}. Received: {name}={value!r}") from None


def sparse_values(
    initializer: str, nnz: int, n_in: int, n_out: int, rng: np.random.Generator
) -> np.ndarray:
    """Initial kernel values for a sparse kernel with `nnz` connections.

    `"set_normal"` draws N(0, 1) / 10 like the original SET code. The
    variance-scaling names use the layer's effective fans (average in-degree
    `nnz / n_out` and out-degree `nnz / n_in`), so that a sparse layer keeps
    the activation scale a dense layer with those initialisers would have.
    """
    if initializer == "set_normal":
        return (rng.standard_normal(nnz) / 10.0).astype(np.float32)
    scale, mode, distribution = _VALUE_INITIALIZERS[initializer]
    fan_in, fan_out = max(1.0, nnz / n_out), max(1.0, nnz / n_in)
    fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / fan
    if distribution == "uniform":
        limit = np.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, nnz).astype(np.float32)
    # Truncated normal at two standard deviations, as Keras does.
    std = np.sqrt(variance) / 0.87962566103423978
    out = rng.standard_normal(nnz)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * std).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_npset")
class SparseDense(keras.layers.Layer):
    """Densely-connected layer with a truly sparse kernel.

    Computes `output = activation(inputs @ kernel + bias)` where `kernel` is
    stored as a sparse matrix: a non-trainable int32 `indices` variable of
    shape `[nnz, 2]` (unique `(input, unit)` pairs in tile order, which is
    row-major for layers of up to `topology.TILE_COLS` = 16384 units; see
    `keras_npset.topology`) and a trainable `values` variable of shape
    `[nnz]`. No dense
    `(input_dim, units)` tensor exists at any time, in training or
    inference. The topology is drawn once at `build` as an Erdos-Renyi random
    graph (Mocanu et al. 2018) and can then be evolved by `SETEvolution` and
    narrowed by `NeuronPruning`.

    Args:
        units: Positive integer, width of the layer (its number of output
            neurons).
        epsilon: Positive number controlling sparsity as in SET:
            `epsilon * (input_dim + units)` random positions are drawn with
            replacement (duplicates collapse), a target density of
            `epsilon * (input_dim + units) / (input_dim * units)`, capped at
            1. Defaults to `10`, the NPSET paper's setting.
        density: Optional number in (0, 1]. If given, overrides `epsilon`
            and places exactly `round(density * input_dim * units)` distinct
            connections. Defaults to `None`.
        activation: Activation function. Defaults to `None` (linear).
        use_bias: Whether the layer has a bias vector. Defaults to `True`.
        kernel_initializer: How the kernel values are initialised: one of
            `"glorot_uniform"`, `"glorot_normal"`, `"he_uniform"`,
            `"he_normal"`, `"lecun_uniform"`, `"lecun_normal"` (variance
            scaling with the sparse layer's *effective* fans, the average
            in-degree `nnz / units` and out-degree `nnz / input_dim`, so a
            sparse layer starts at the activation scale of a dense one), or
            `"set_normal"` (N(0, 1) / 10, the original SET code).
            Defaults to `"glorot_uniform"`, like `keras.layers.Dense`.
        bias_initializer: Initializer for the bias. Defaults to `"zeros"`.
        kernel_regularizer: Regularizer applied to the kernel values.
            Defaults to `None`.
        bias_regularizer: Regularizer for the bias. Defaults to `None`.
        kernel_constraint: Constraint applied to the kernel values.
            Defaults to `None`.
        bias_constraint: Constraint applied to the bias. Defaults to `None`.
        kernel_impl: How `inputs @ kernel` is computed: `"gather"` (gather,
            scale, segment-sum, compiled with XLA on its own; fastest at
            small batches, and the choice for a model compiled with
            `jit_compile=True`), `"csr"` (TensorFlow's multi-threaded CSR
            kernels; fastest from a batch of about 16; no XLA),
            `"sparse_dense_matmul"` (TensorFlow's sparse kernel, the
            reference; no XLA) or `"auto"` (`"gather"` in a model compiled
            with XLA; otherwise `"gather"` below a batch of
            `kernels.AUTO_CSR_MIN_BATCH` and `"csr"` from there, chosen at
            run time). Defaults to `"auto"`. Outside training (`predict`,
            `evaluate`, a call without `training=True`) every choice gives
            bitwise the same outputs for the same inputs; in training the
            CSR forward's float32 sums vary in their last bits (about 1e-7)
            from step to step (`kernels`, "Determinism").
        seed: Integer seed for the topology and the initial values. Defaults
            to `None` (drawn from NumPy's global generator, which
            `keras.utils.set_random_seed` seeds).
        initial_units: Width the layer was created with, kept so that
            compression can be reported after neuron pruning and across
            save/load. Defaults to `None` (= `units`).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., input_dim)`.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    Example:

    >>> layer = SparseDense(64, epsilon=5, activation="relu", seed=0)
    >>> y = layer(np.ones((2, 100), "float32"))
    >>> layer.kernel.dense_shape.numpy().tolist(), layer.nnz <= 5 * (100 + 64)
    ([100, 64], True)
    """

    def __init__(
        self,
        units,
        epsilon=10.0,
        density=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        kernel_impl="auto",
        seed=None,
        initial_units=None,
        **kwargs,
    ):
        _get("activity_regularizer", regularizers.get, activity_regularizer)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        check_int("units", units, 1)
        self.epsilon = check_positive("epsilon", epsilon)  # a float, for get_config
        if density is not None:
            check_positive("density", density, maximum=1)
        check_choice("kernel_initializer", kernel_initializer, KERNEL_INITIALIZERS)
        # Truthful for Keras's jit_compile="auto": only the gather path has XLA kernels.
        self.supports_jit = kernels.JIT_COMPATIBLE[kernels.resolve(kernel_impl)]
        check_seed("seed", seed)
        check_bool("use_bias", use_bias)
        if initial_units is not None and (not is_int(initial_units) or initial_units < units):
            raise ValueError(
                "Expected `initial_units` to be None or an integer >= `units` (the width the "
                f"layer was created with). Received: initial_units={initial_units!r}"
            )
        self.units = int(units)
        self.density = None if density is None else float(density)
        self.activation = _get("activation", activations.get, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = _get("bias_initializer", initializers.get, bias_initializer)
        self.kernel_regularizer = _get("kernel_regularizer", regularizers.get, kernel_regularizer)
        self.bias_regularizer = _get("bias_regularizer", regularizers.get, bias_regularizer)
        self.kernel_constraint = _get("kernel_constraint", constraints.get, kernel_constraint)
        self.bias_constraint = _get("bias_constraint", constraints.get, bias_constraint)
        self.kernel_impl = kernel_impl
        self.seed = None if seed is None else int(seed)
        self.initial_units = int(initial_units) if initial_units is not None else self.units
        self.input_dim = None
        # Live size: `units`, `input_dim` and `_nnz` connections. The storage
        # may be larger while neuron pruning runs (see `padded`): then
        # `_capacity` holds its (input_dim, units) and `pad_ready` is set.
        self._nnz = None
        self._capacity = None
        self.pad_ready = False
        self._nnz_from_config = None
        self._resizable_units = False
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        for name, width in (("input_dim", input_dim), ("units", self.units)):
            if width > MAX_WIDTH:
                raise ValueError(
                    f"Expected `{name}` to be at most {MAX_WIDTH} (int32 indices). "
                    f"Received: {name}={width}"
                )
        self.input_dim = input_dim
        self._capacity = (input_dim, self.units)
        if self._nnz_from_config is not None:
            # Restoring a saved layer: the weights loaded next fix the topology.
            nnz = self._nnz_from_config
            indices = np.zeros((nnz, 2), np.int32)
            values = np.zeros(nnz, np.float32)
        else:
            seed = self.seed if self.seed is not None else np.random.randint(2**31 - 1)
            rng = np.random.default_rng(seed)
            indices = erdos_renyi_indices(
                input_dim, self.units, rng, epsilon=self.epsilon, density=self.density
            )
            values = sparse_values(
                self.kernel_initializer, len(indices), input_dim, self.units, rng
            )
            indices = indices.astype(np.int32)
        self._nnz = len(indices)
        self.indices = self.add_weight(
            name="indices",
            shape=indices.shape,
            dtype="int32",
            initializer=lambda shape, dtype: indices,
            trainable=False,
        )
        self.values = self.add_weight(
            name="values",
            shape=values.shape,
            initializer=lambda shape, dtype: values,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    @property
    def nnz(self) -> int:
        """Current number of (live) connections."""
        return int(self._nnz)

    def count_params(self) -> int:
        """Parameters of the live layer: one value per connection, plus the biases.

        What `model.summary()` shows as the layer's `Param #`. Keras's default
        would count every scalar of every weight: also the int32 `indices`
        (two per connection, the topology's storage, not parameters) and,
        during neuron pruning inside `fit`, the padding.
        """
        if not self.built:
            return super().count_params()  # Keras's "isn't built" error
        return self.nnz + (self.units if self.use_bias else 0)

    # ------------------------------------------------------------ capacity
    # Neuron pruning shrinks a layer many times in a run. Re-creating its
    # variables each time would re-trace and re-compile every function of the
    # model, so the layer can instead keep its storage at a *capacity*
    # (`capacity`: connections, input width, units) and hold the live kernel
    # in a prefix of it: live connections first, then padding with index
    # (-1, -1) and value 0 that the kernels ignore (`kernels`, "Padding");
    # units past `units` have zero bias and no connection, so nothing reads
    # them and they receive no gradient. Everything that reports or saves the
    # layer (`nnz`, `units`, `input_dim`, `kernel`, `to_dense_kernel`,
    # `live_*`, `get_config`, the saved weights) sees the live part only.
    # A resizable layer (`set_resizable`) goes further: its storage has an
    # unknown length and the traced functions read the widths from it, so
    # even a change of capacity needs no re-trace. Traced with unknown
    # widths, TensorFlow's graph optimiser rewrites fewer sums, so training
    # results differ from a static trace's in the last float32 bits.

    @property
    def capacity(self) -> tuple[int, int, int]:
        """`(connections, input width, units)` the variables have room for."""
        return (int(self.indices.shape[0]), *self._capacity)

    @property
    def padded(self) -> bool:
        """Whether the storage is larger than the live kernel."""
        return self.capacity != (self.nnz, self.input_dim, self.units)

    def set_pad_ready(self, ready: bool) -> bool:
        """Trace the kernel so that it may be padded (see `capacity`).

        While set, the traced kernel masks padding, so the layer can be
        resized within its capacity without re-tracing. Returns whether the
        setting changed: the caller must then rebuild the model's traced
        functions. Clearing it needs an exact layer (`compact` first).
        """
        ready = bool(ready)
        if not ready and self.capacity[0] != self.nnz:
            raise ValueError(
                f"Layer {self.name!r} is padded; compact it before clearing `pad_ready`. "
                f"Received: ready={ready}"
            )
        changed = ready != self.pad_ready
        self.pad_ready = ready
        return changed

    @property
    def resizable(self) -> bool:
        """Whether the storage takes new shapes in place (`set_resizable`)."""
        return bool(self.built and _keras.is_resizable(self.values))

    @property
    def resizable_units(self) -> bool:
        """Whether the units, too, may change in place (`set_resizable(units=True)`)."""
        return self.resizable and self._resizable_units

    def set_resizable(self, optimizer=None, strategy=None, units=True) -> bool:
        """Give the variables (and their optimizer slots) storage of unknown shape.

        Functions traced afterwards read the widths from the storage, so a
        later change of capacity (`set_capacity`, `compact`) happens in
        place: no re-trace, only XLA compilations at the new shapes. Neuron
        pruning does this for the layers it prunes, so that its final
        compaction re-traces nothing. With `units=False` only the connections
        and the input width may change; the units stay a constant of the
        traced functions (an output layer's, whose shape the loss sees).
        Resizable units need a bias (the traced functions read the width
        from it) and at most `topology.TILE_COLS` units (the CSR path's
        column tiles are fixed when traced); for other layers it does
        nothing. Returns whether anything changed: the caller must then
        rebuild the model's traced functions (`surgery.refresh_model`).
        """
        units = bool(units)
        if (self.bias is None and units) or self.capacity[2] > topology.TILE_COLS:
            return False
        changed = units != self._resizable_units
        self._resizable_units = units
        if self.resizable and not changed:
            return False
        for variable in (self.indices, self.values, self.bias):
            if variable is not None:
                changed = make_resizable(variable, optimizer, strategy) or changed
        return changed

    def live_indices(self) -> np.ndarray:
        """The live connections' `(input, unit)` pairs, `[nnz, 2]` int32."""
        return read(self.indices)[: self.nnz]

    def live_values(self) -> np.ndarray:
        """The live connections' values, `[nnz]`."""
        return read(self.values)[: self.nnz]

    def live_bias(self) -> np.ndarray | None:
        """The live units' bias, `[units]`, or None without a bias."""
        return None if self.bias is None else read(self.bias)[: self.units]

    def live_length(self, variable) -> int | None:
        """Live entries of one of this layer's variables (axis 0), or None if not its own."""
        if variable is self.indices or variable is self.values:
            return self.nnz
        if self.bias is not None and variable is self.bias:
            return self.units
        return None

    def use_kernel(self, kernel_impl: str) -> str:
        """Compute `inputs @ kernel` with `kernel_impl` from now on; returns the previous choice.

        `kernel_impl` is one of `kernels.IMPLEMENTATIONS` (see the class
        docstring). Sets `supports_jit` with it, so Keras's
        `jit_compile="auto"` sees whether the layer can be XLA-compiled. A
        function traced before keeps the kernel it traced: the caller
        rebuilds the model's functions (or exports) afterwards.
        """
        supports_jit = kernels.JIT_COMPATIBLE[kernels.resolve(kernel_impl)]
        previous = self.kernel_impl
        self.kernel_impl, self.supports_jit = kernel_impl, supports_jit
        return previous

    def record_input_width(self) -> None:
        """Record the live input width as the one the layer was built for.

        Keras keeps the input shapes a layer was built with (`summary` shows
        them for a layer outside a model graph); input pruning calls this
        after narrowing the layer's input with `set_kernel`.
        """
        _keras.set_build_input_width(self, self.input_dim)

    def set_kernel(
        self,
        indices,
        values,
        source,
        shape,
        capacity=None,
        optimizer=None,
        strategy=None,
    ) -> None:
        """Give the layer the live connections `indices` with `values`.

        Args:
            indices: `[n, 2]` int `(input, unit)` pairs, unique, in tile order.
            values: `[n]` values of the connections.
            source: `[n]` old live position of each connection, -1 for a new
                one; optimizer slots move with it (new ones start at zero).
            shape: the live `(input_dim, units)` of the new kernel.
            capacity: `(connections, input_dim, units)` of the storage.
                Defaults to `None`: the current capacity, which must hold the
                new kernel (variables keep their storage and traced functions
                stay valid). A different capacity re-creates the storage: the
                caller rebuilds the model's traced functions.
            optimizer: the optimizer whose slots to carry. Defaults to `None`.
            strategy: the `tf.distribute` strategy of the variables. Defaults
                to `None`.
        """
        n = len(indices)
        n_in, units = (int(d) for d in shape)
        cap = self.capacity if capacity is None else tuple(int(c) for c in capacity)
        if n > cap[0] or n_in > cap[1] or units > cap[2]:
            raise ValueError(
                f"Expected the kernel of layer {self.name!r} to fit its capacity {cap}. "
                f"Received: {n} connections, shape={(n_in, units)}"
            )
        padded_indices = np.full((cap[0], 2), -1, np.int32)
        padded_indices[:n] = indices
        padded_values = np.zeros(cap[0], self.values.dtype)
        padded_values[:n] = values
        padded_source = np.full(cap[0], -1, np.int64)
        padded_source[:n] = source
        set_value(self.indices, padded_indices, strategy)
        carry(self.values, padded_values, padded_source, optimizer, strategy)
        self._nnz, self.input_dim, self.units = n, n_in, units
        self._capacity = cap[1:]
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: cap[1]})
        if self.bias is not None and self.bias.shape[0] != cap[2]:
            # New storage for the bias too, holding its first `units` entries
            # (narrow it with `keep_units` first when units are dropped).
            self.keep_units(np.arange(units), cap, optimizer, strategy)

    def keep_units(self, keep, capacity=None, optimizer=None, strategy=None) -> None:
        """Keep the bias (and its optimizer slots) of units `keep` only.

        The kernel's columns are the caller's (`set_kernel`); this narrows the
        per-unit state to `len(keep)` live units within `capacity` (as in
        `set_kernel`, defaulting to the current one).
        """
        cap = self.capacity if capacity is None else tuple(int(c) for c in capacity)
        keep = np.asarray(keep, np.int64)
        if keep.size > cap[2]:
            raise ValueError(
                f"Expected at most {cap[2]} units (the capacity of layer {self.name!r}). "
                f"Received: {keep.size} units in `keep`"
            )
        if self.bias is not None:
            source = np.full(cap[2], -1, np.int64)
            source[: keep.size] = keep
            bias = np.zeros(cap[2], self.bias.dtype)
            bias[: keep.size] = read(self.bias)[keep]
            carry(self.bias, bias, source, optimizer, strategy)
        self.units = int(keep.size)

    def set_capacity(
        self, connections=None, input_dim=None, units=None, optimizer=None, strategy=None
    ) -> bool:
        """Re-create the storage at a new capacity; returns whether it changed.

        Each of `connections`, `input_dim`, `units` defaults to `None`: keep
        the current capacity there. A layer that is not `pad_ready` always
        gets exactly its live connections. Changed storage invalidates the
        model's traced functions: the caller rebuilds them
        (`surgery.refresh_model`). The input capacity must stay the units
        capacity of the layer before.
        """
        cap = list(self.capacity)
        for i, value in enumerate((connections, input_dim, units)):
            if value is not None:
                cap[i] = int(value)
        if not self.pad_ready:
            cap[0] = self.nnz
        if tuple(cap) == self.capacity:
            return False
        self.set_kernel(
            self.live_indices(),
            self.live_values(),
            np.arange(self.nnz),
            (self.input_dim, self.units),
            capacity=cap,
            optimizer=optimizer,
            strategy=strategy,
        )
        return True

    def compact(self, optimizer=None, strategy=None) -> bool:
        """Shrink the storage to the live kernel (no padding); returns whether it changed.

        See `set_capacity`.
        """
        return self.set_capacity(self.nnz, self.input_dim, self.units, optimizer, strategy)

    @property
    def kernel(self) -> tf.SparseTensor:
        """The kernel as a `tf.SparseTensor` of dense shape `(input_dim, units)`.

        In TensorFlow's canonical row-major order, which the storage of a
        layer wider than `topology.TILE_COLS` units is not (it is then
        reordered here).
        """
        kernel = tf.SparseTensor(
            tf.cast(self.live_indices(), tf.int64),
            tf.convert_to_tensor(self.live_values()),
            dense_shape=(self.input_dim, self.units),
        )
        return tf.sparse.reorder(kernel) if self.units > topology.TILE_COLS else kernel

    def save_own_variables(self, store):
        # The live part only: a saved layer has its live widths (`get_config`,
        # `get_build_config`) and no padding.
        for i, variable in enumerate(_keras.own_variables(self)):
            live = self.live_length(variable)
            store[f"{i}"] = variable if live is None or not self.padded else read(variable)[:live]

    def load_own_variables(self, store):
        super().load_own_variables(store)
        # Weights saved in another order (row-major by an earlier version, or
        # under another tile width) are put into tile order: the CSR path and
        # SET's sorted merges need it. Known gap: optimizer slots restored
        # from the same file (they load after the layers) are not permuted,
        # so such a layer's momentum starts misaligned. Only layers wider than
        # `TILE_COLS` units saved before tile order existed are affected.
        indices = self.indices.numpy()
        order = topology.tile_order(indices, (self.input_dim, self.units))
        if order is not None:
            self.indices.assign(indices[order])
            self.values.assign(self.values.numpy()[order])

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs, dtype=self.compute_dtype)
        leading = tf.shape(inputs)[:-1]
        # Traced at the capacity: the functions stay valid while the live
        # kernel shrinks within it.
        # Padded widths need nothing (no connection reads or feeds them);
        # padded connections need the masking kernels.
        if self.capacity[0] != self.nnz and not self.pad_ready:
            raise ValueError(
                f"Layer {self.name!r} has padded connections but was not made `pad_ready`; "
                f"call `compact()` or `set_pad_ready(True)` first. Received: capacity="
                f"{self.capacity}, live {(self.nnz, self.input_dim, self.units)}"
            )
        n_in, units = self._capacity
        static_units = units
        if self.resizable:
            # Widths from the storage and the inputs, not constants: a change
            # of capacity keeps the traced function valid (`set_resizable`).
            n_in = inputs.shape[-1] if inputs.shape[-1] is not None else tf.shape(inputs)[-1]
            if self._resizable_units:
                units, static_units = tf.shape(self.bias)[0], None
        x = tf.reshape(inputs, (-1, n_in))
        values = tf.cast(tf.convert_to_tensor(self.values), self.compute_dtype)
        outputs = kernels.sparse_matmul(
            self.kernel_impl,
            x,
            tf.convert_to_tensor(self.indices),
            values,
            n_in,
            units,
            padded=self.pad_ready,
            # Chosen by the storage when traced: the traced functions keep it
            # while the storage shrinks in place (`set_resizable`).
            chunk=kernels.chunk_for(self.capacity[0]),
            # Outside training (`predict`, `evaluate`, a plain call) the
            # same inputs give bitwise the same outputs on every path
            # (`kernels`, "Determinism"); training keeps its kernels.
            deterministic=training is not True,
        )
        if self.bias is not None:
            outputs = outputs + tf.cast(tf.convert_to_tensor(self.bias), self.compute_dtype)
        # The kernels' outputs (XLA function calls, CSR products, `tf.cond`)
        # and the bias read have no static shape for Grappler, whose cost
        # model then warns on every op that needs a rank (a softmax output:
        # "PredictCost() ... unknown_rank"). An identity that states it.
        outputs = tf.ensure_shape(outputs, (x.shape[0], static_units))
        if len(inputs.shape) != 2:
            outputs = tf.reshape(outputs, tf.concat([leading, [units]], axis=0))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        # What `call` produces: the units capacity (the live width unless
        # neuron pruning is padding the layer within `fit`).
        return (*tuple(input_shape)[:-1], self._capacity[1] if self._capacity else self.units)

    def get_build_config(self):
        if not self.built:
            return None
        # The live input width (it changes when the previous layer is pruned)
        # and nnz, so a loaded layer gets variables of the saved shapes.
        return {"input_shape": (None, self.input_dim), "nnz": self.nnz}

    def build_from_config(self, config):
        self._nnz_from_config = config.get("nnz")
        try:
            self.build(config["input_shape"])
        finally:
            self._nnz_from_config = None
        self.built = True

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "epsilon": self.epsilon,
            "density": self.density,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "kernel_impl": self.kernel_impl,
            "seed": self.seed,
            "initial_units": self.initial_units,
        }
        return {**base_config, **config}

    def to_dense_kernel(self) -> np.ndarray:
        """The kernel as a dense NumPy array (for tests, export and inspection only)."""
        dense = np.zeros((self.input_dim, self.units), dtype=self.values.dtype)
        idx = self.live_indices()
        dense[idx[:, 0], idx[:, 1]] = self.live_values()
        return dense
