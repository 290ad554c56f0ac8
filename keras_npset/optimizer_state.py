"""Carry variables and their optimizer slots across topology changes.

Keras 3 variables cannot change shape through `assign`, and Keras 3's
TensorFlow optimizer keys its slot variables (momentum, Adam moments, ...) by
the unique id of the underlying `tf.Variable`. A variable whose shape changes
therefore keeps its Keras `Variable` object (so layers, models and the
optimizer's lists stay valid) and gets new backing storage; its slots get new
storage too, and the optimizer's index is re-keyed to the new storage.
Same-shape changes (SET keeps nnz constant) are plain in-place assignments.
The Keras and TensorFlow internals this needs (storage replacement, the
optimizer's index and where each optimizer keeps its slots) are in
`keras_npset._keras`.

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

import numpy as np
import tensorflow as tf

from keras_npset import _keras
from keras_npset.topology import take_with_source


def base_optimizer(optimizer):
    """The optimizer that owns the slots (unwraps `LossScaleOptimizer`)."""
    while optimizer is not None and hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def slot_variables(optimizer, variable) -> list:
    """The optimizer variables that hold per-element state for `variable`.

    The momentum, Adam moments and the like of the optimizer that owns the
    slots (a `LossScaleOptimizer` is unwrapped); `[]` when `optimizer` is
    None, not built, or does not train `variable`. Raises `ValueError` for
    an optimizer whose slots `keras_npset._keras.slot_variables` does not
    know, rather than guessing.
    """
    return _keras.slot_variables(base_optimizer(optimizer), variable)


def read(variable) -> np.ndarray:
    """The value of a Keras variable as a NumPy array."""
    storage = _keras.tf_storage(variable)
    if storage is None:
        return variable.numpy()
    return tf.raw_ops.ReadVariableOp(resource=storage.handle, dtype=storage.dtype).numpy()


def set_value(variable, value, strategy=None) -> None:
    """Give `variable` the value `value`, replacing its storage if the shape changed.

    A resizable variable (`make_resizable`) takes any shape in its storage.

    Under a `tf.distribute` strategy the new storage is created inside
    `strategy.scope()` (the variable's own strategy when `strategy` is
    `None`), so it is a mirrored variable like the one it replaces.
    """
    value = np.asarray(value, dtype=variable.dtype)
    if tuple(variable.shape) == value.shape:
        storage = _keras.tf_storage(variable)
        if storage is None:
            variable.assign(value)
        else:
            # Converted first and held here: with a second reference to its
            # buffer, the op copies it instead of adopting memory that may be
            # `value`'s own (TensorFlow wraps aligned NumPy arrays).
            tensor = tf.constant(value)
            tf.raw_ops.AssignVariableOp(resource=storage.handle, value=tensor)
        return
    if _keras.is_resizable(variable):
        # Storage of unknown shape (`make_resizable`): the new shape fits it,
        # so the traced functions, which read it, stay valid.
        with tf.init_scope():
            _keras.resize(variable, value)
        return
    if strategy is None:
        # A mirrored variable knows its strategy: new storage must be created
        # under that strategy's scope, or the next distributed update fails.
        strategy = _keras.distribute_strategy_of(variable)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, tf.init_scope():
        _keras.replace_storage(variable, value)


def carry(variable, new_value, source, optimizer=None, strategy=None) -> None:
    """Set `variable` to `new_value` and carry its optimizer slots by `source`.

    `source[i]` is the old position of element `i` of the new value, or -1
    for a new element, whose slots start from zero.
    """
    optimizer = base_optimizer(optimizer)
    slots = slot_variables(optimizer, variable)
    slot_values = [take_with_source(read(s), source, 0.0) for s in slots]
    # The optimizer finds the variable by its storage: follow it to the new one.
    with _keras.keep_optimizer_key(optimizer, variable):
        set_value(variable, new_value, strategy)
        for slot, value in zip(slots, slot_values, strict=True):
            set_value(slot, value, strategy)


def is_resizable(variable, optimizer=None) -> bool:
    """Whether `variable` and all its optimizer slots have storage of unknown length."""
    variables = (variable, *slot_variables(optimizer, variable))
    return all(_keras.is_resizable(v) for v in variables)


def make_resizable(variable, optimizer=None, strategy=None) -> bool:
    """Give `variable` and its optimizer slots storage of unknown shape.

    Afterwards `set_value` and `carry` change their shapes in place, so the
    functions traced from then on need no re-trace when they do. Returns
    whether anything changed: the caller must then rebuild the model's
    traced functions, which captured the old storage.
    """
    optimizer = base_optimizer(optimizer)
    todo = [
        v for v in (variable, *slot_variables(optimizer, variable)) if not _keras.is_resizable(v)
    ]
    if not todo:
        return False
    if strategy is None:
        strategy = _keras.distribute_strategy_of(variable)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, tf.init_scope():
        with _keras.keep_optimizer_key(optimizer, variable):
            for v in todo:
                _keras.make_resizable(v)
    return True


def save_live_slots(optimizer, live_length):
    """Make `optimizer` save only the live part of padded variables' slots.

    A layer that neuron pruning keeps at a larger capacity saves its live
    part only (`SparseDense.save_own_variables`); its slots must match, or
    the saved file would not load. `live_length(variable)` returns the live
    entries (axis 0) of a model variable, or None to save it whole. Overrides
    the saving of the optimizer that owns the slots
    (`_keras.override_optimizer_saving`) and returns a function that undoes
    it.
    """
    owner = base_optimizer(optimizer)

    def values():
        lengths = {}
        for variable in _keras.optimizer_trainable_variables(owner):
            n = live_length(variable)
            if n is not None:
                for slot in slot_variables(owner, variable):
                    lengths[id(slot)] = n
        out = []
        for variable in owner.variables:
            value = read(variable)
            n = lengths.get(id(variable))
            out.append(value if n is None else value[:n])
        return out

    return _keras.override_optimizer_saving(owner, values)
