"""Apply topology changes to live layers, their optimizer state and the model.

The callbacks decide *what* changes (with the pure functions of `topology`);
this module carries it out on a built, compiled model:

- `rewire_layer`: new connections of one SparseDense layer (SET).
- `remove_units`: physically remove hidden neurons (NPSET): the layer's
  kernel columns and bias, the per-unit layers after it and the next
  SparseDense layer's kernel rows, carrying every surviving value and
  optimizer slot.
- `refresh_model`: rebuild the traced train/test/predict functions (and the
  symbolic graph of a Sequential model) after storage changed shape.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_npset.graph import Link
from keras_npset.layers import SparseDense
from keras_npset.optimizer_state import carry, read, set_value
from keras_npset.topology import Rewiring, keep_units, take_with_source


def rewire_layer(
    layer: SparseDense, rewiring: Rewiring, new_values=0.0, optimizer=None, strategy=None
) -> None:
    """Give `layer` the connections of `rewiring`.

    Surviving connections keep their values and optimizer slots; new ones
    (source -1) get `new_values` (a scalar or one value per new connection)
    and zero optimizer state.
    """
    values = take_with_source(read(layer.values), rewiring.source, new_values)
    set_value(layer.indices, rewiring.indices, strategy)
    carry(layer.values, values, rewiring.source, optimizer, strategy)
    shape = tuple(int(d) for d in rewiring.shape)
    if shape != (layer.input_dim, layer.units):
        layer.bucket_shapes = True
    layer.input_dim, layer.units = shape


def _shrink_last_axis(layer, keep: np.ndarray, optimizer, strategy) -> None:
    for weight in layer.weights:
        carry(weight, read(weight)[keep], keep, optimizer, strategy)


def _set_input_width(layer, width: int) -> None:
    """Record a new input width in a layer's build config and input spec."""
    shapes = getattr(layer, "_build_shapes_dict", None)
    if shapes:
        for key, shape in shapes.items():
            if shape is not None:
                shapes[key] = (*tuple(shape)[:-1], width)
    spec = layer.input_spec
    if isinstance(spec, keras.layers.InputSpec) and spec.axes:
        last = (spec.ndim or 0) - 1
        spec.axes = {
            axis: width if axis in (-1, last) else size for axis, size in spec.axes.items()
        }


def remove_units(link: Link, keep: np.ndarray, optimizer=None, strategy=None) -> None:
    """Keep only the units `keep` (sorted) of `link.layer`, physically.

    The layers between `link.layer` and `link.next` shrink their per-unit
    weights (normalisations) and record the new width, so the model saves
    and reloads with it.
    """
    layer, nxt = link.layer, link.next
    keep = np.asarray(keep, np.int64)
    width = int(keep.size)
    rewire_layer(
        layer,
        keep_units(read(layer.indices), (layer.input_dim, layer.units), keep, axis=1),
        optimizer=optimizer,
        strategy=strategy,
    )
    if layer.bias is not None:
        carry(layer.bias, read(layer.bias)[keep], keep, optimizer, strategy)
    for between in link.between:
        _shrink_last_axis(between, keep, optimizer, strategy)
        _set_input_width(between, width)
    rewire_layer(
        nxt,
        keep_units(read(nxt.indices), (nxt.input_dim, nxt.units), keep, axis=0),
        optimizer=optimizer,
        strategy=strategy,
    )
    _set_input_width(nxt, width)


def refresh_model(model) -> None:
    """Rebuild what captured the old variable storage or widths.

    The train/test/predict functions are re-traced on their next use, and a
    Sequential model with an `Input` rebuilds its symbolic graph so that
    `summary()` and `model.output_shape` show the current widths.
    """
    if isinstance(model, keras.Sequential) and model._functional is not None:
        first = model._layers[0] if model._layers else None
        if isinstance(first, keras.layers.InputLayer):
            model._functional = None
            model.build(first.batch_shape)
    else:
        _refresh_symbolic_shapes(model)
    model.make_train_function(force=True)
    model.make_test_function(force=True)
    model.make_predict_function(force=True)


def _refresh_symbolic_shapes(model) -> None:
    """Update the recorded output shapes of a functional model's nodes."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if not nodes_by_depth:
        return
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer) or not node.arguments:
                continue
            inputs = node.arguments.keras_tensors
            try:
                shape = op.compute_output_shape(
                    inputs[0].shape if len(inputs) == 1 else [t.shape for t in inputs]
                )
            except Exception:  # layers without compute_output_shape keep their record
                continue
            if len(node.outputs) == 1 and isinstance(shape, tuple):
                node.outputs[0]._shape = tuple(shape)
