"""Carry variables and their optimizer slots across topology changes.

Keras 3 variables cannot change shape through `assign`, and Keras 3's
TensorFlow optimizer keys its slot variables (momentum, Adam moments, ...) by
the unique id of the underlying `tf.Variable`. A variable whose shape changes
therefore keeps its Keras `Variable` object (so layers, models and the
optimizer's lists stay valid) and gets new backing storage; its slots get new
storage too, and the optimizer's index is re-keyed to the new storage.
Same-shape changes (SET keeps nnz constant) are plain in-place assignments.

Reads and same-shape writes of a single-device variable go straight to
TensorFlow's `ReadVariableOp` / `AssignVariableOp`, three to five times
cheaper than Keras's `Variable.numpy` / `Variable.assign` (on the 2-core CPU,
about 35 against 110 microseconds to write 40k floats): a SET step makes
three reads and three writes per layer, a fixed cost that shows on a small,
pruned network. Distributed variables take Keras's path.

After any change of backing storage the caller must rebuild the model's
train/test/predict functions, which captured the old storage.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops  # the exact eager type

from keras_npset.topology import take_with_source


def base_optimizer(optimizer):
    """The optimizer that owns the slots (unwraps `LossScaleOptimizer`)."""
    while optimizer is not None and hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _known_index(optimizer, variable) -> int | None:
    if optimizer is None or not getattr(optimizer, "built", False):
        return None
    return optimizer._trainable_variables_indices.get(optimizer._var_key(variable))


def slot_variables(optimizer, variable) -> list:
    """The optimizer variables that hold per-element state for `variable`.

    Every Keras 3 optimizer keeps its slots in lists parallel to its
    trainable variables (`momentums`, `_momentums`, `_velocities`, EMA
    averages, gradient accumulators, ...): the slots are the entries at the
    variable's index in each such list that have the variable's shape.
    """
    optimizer = base_optimizer(optimizer)
    index = _known_index(optimizer, variable)
    if index is None:
        return []
    count = len(optimizer._trainable_variables)
    slots, seen = [], set()
    for attr in vars(optimizer).values():
        if not isinstance(attr, list | tuple) or len(attr) != count:
            continue
        slot = attr[index]
        if (
            isinstance(slot, keras.Variable)
            and slot is not variable
            and tuple(slot.shape) == tuple(variable.shape)
            and id(slot) not in seen
        ):
            seen.add(id(slot))
            slots.append(slot)
    return slots


def _storage(variable):
    """The single `tf.Variable` behind a Keras variable, or None (distributed, other)."""
    storage = getattr(variable, "value", None)
    if type(storage) is resource_variable_ops.ResourceVariable:
        return storage
    return None


def read(variable) -> np.ndarray:
    """The value of a Keras variable as a NumPy array."""
    storage = _storage(variable)
    if storage is None:
        return variable.numpy()
    return tf.raw_ops.ReadVariableOp(resource=storage.handle, dtype=storage.dtype).numpy()


def set_value(variable, value, strategy=None) -> None:
    """Give `variable` the value `value`, replacing its storage if the shape changed.

    Under a `tf.distribute` strategy the new storage is created inside
    `strategy.scope()` (the variable's own strategy when `strategy` is
    `None`), so it is a mirrored variable like the one it replaces.
    """
    value = np.asarray(value, dtype=variable.dtype)
    if tuple(variable.shape) == value.shape:
        storage = _storage(variable)
        if storage is None:
            variable.assign(value)
        else:
            # Converted first and held here: with a second reference to its
            # buffer, the op copies it instead of adopting memory that may be
            # `value`'s own (TensorFlow wraps aligned NumPy arrays).
            tensor = tf.constant(value)
            tf.raw_ops.AssignVariableOp(resource=storage.handle, value=tensor)
        return
    if strategy is None:
        # A mirrored variable knows its strategy: new storage must be created
        # under that strategy's scope, or the next distributed update fails.
        strategy = getattr(variable.value, "_distribute_strategy", None)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, tf.init_scope():
        variable._initialize(value)
    variable._shape = tuple(value.shape)
    variable._ndim = len(value.shape)


def carry(variable, new_value, source, optimizer=None, strategy=None) -> None:
    """Set `variable` to `new_value` and carry its optimizer slots by `source`.

    `source[i]` is the old position of element `i` of the new value, or -1
    for a new element, whose slots start from zero.
    """
    optimizer = base_optimizer(optimizer)
    slots = slot_variables(optimizer, variable)
    slot_values = [take_with_source(read(s), source, 0.0) for s in slots]
    index = _known_index(optimizer, variable)
    old_key = optimizer._var_key(variable) if index is not None else None
    set_value(variable, new_value, strategy)
    for slot, value in zip(slots, slot_values, strict=True):
        set_value(slot, value, strategy)
    if index is not None:
        new_key = optimizer._var_key(variable)
        if new_key != old_key:
            del optimizer._trainable_variables_indices[old_key]
            optimizer._trainable_variables_indices[new_key] = index


def save_live_slots(optimizer, live_length):
    """Make `optimizer` save only the live part of padded variables' slots.

    A layer that neuron pruning keeps at a larger capacity saves its live
    part only (`SparseDense.save_own_variables`); its slots must match, or
    the saved file would not load. `live_length(variable)` returns the live
    entries (axis 0) of a model variable, or None to save it whole. Installs
    an instance-level `save_own_variables` on the optimizer that owns the
    slots (what `model.save` calls) and returns a function that removes it.
    """
    owner = base_optimizer(optimizer)

    def save_own_variables(store):
        lengths = {}
        for variable in owner._trainable_variables:
            n = live_length(variable)
            if n is not None:
                for slot in slot_variables(owner, variable):
                    lengths[id(slot)] = n
        for i, variable in enumerate(owner.variables):
            value = read(variable)
            n = lengths.get(id(variable))
            store[str(i)] = value if n is None else value[:n]

    owner.__dict__["save_own_variables"] = save_own_variables
    return lambda: owner.__dict__.pop("save_own_variables", None)
