"""Apply topology changes to live layers, their optimizer state and the model.

The callbacks decide *what* changes (with the pure functions of `topology`);
this module carries it out on a built, compiled model:

- `rewire_layer`: new connections of one SparseDense layer (SET).
- `remove_units`: remove hidden neurons (NPSET): the layer's kernel columns
  and bias, the per-unit layers after it and the next SparseDense layer's
  kernel rows, carrying every surviving value and optimizer slot.
- `compact`, `should_compact`: capacity management (below).
- `refresh_model`: rebuild the traced train/test/predict functions (and the
  symbolic graph of a Sequential model) after storage changed shape.

Capacity. Re-creating variables at every pruning event would re-trace and
re-compile every function of the model each time (about a second on a small
network, many epochs' worth). Instead `remove_units` writes the smaller
kernels into the layers' existing storage, padded (`SparseDense.capacity`),
and the traced functions stay valid. Only when the pruned layers fill less
than `MIN_FILL` of their storage (never within the paper's schedule), and
after the last event, does `compact` shrink the storage to the live size.
Neuron pruning makes the layers it pads resizable first
(`SparseDense.set_resizable`: storage of unknown length, widths read from
it when traced), so a compaction happens in place and costs only the XLA
compilations at the new shapes; the caller follows it with
`refresh_model(model, retrace=not resizable(links, optimizer))`. A layer
separated from the next one by per-unit weights (normalisation) cannot be
padded: its link is compacted, and the model re-traced, at every event.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_npset import _keras
from keras_npset.graph import Link
from keras_npset.layers import SparseDense
from keras_npset.optimizer_state import carry, is_resizable, read
from keras_npset.topology import Rewiring, keep_units, take_with_source

# Smallest share of their storage the pruned layers may fill (in connections)
# before `should_compact` asks for new, smaller storage. A compaction costs XLA
# compilations of the gather programs at the new shapes (~0.6 s on
# Prostate_GE; a re-trace on top, ~0.6 s more, where the layers are not
# resizable), as much as 5-20 epochs of the paper's networks, and saves only
# a part of an epoch per epoch left in the pruning phase: measured on
# Prostate_GE, Yale and lung_discrete (`benchmarks/bench_runs.py`), a
# compaction at a third never paid for itself. The paper's schedule ends at
# about 12% of the connections, so at 0.1 its runs compact once, after the
# last event; the bound is for schedules that prune far deeper.
MIN_FILL = 0.1


def rewire_layer(
    layer: SparseDense, rewiring: Rewiring, new_values=0.0, optimizer=None, strategy=None
) -> None:
    """Give `layer` the connections of `rewiring`, within its capacity.

    Surviving connections keep their values and optimizer slots; new ones
    (source -1) get `new_values` (a scalar or one value per new connection)
    and zero optimizer state.
    """
    values = take_with_source(layer.live_values(), rewiring.source, new_values)
    layer.set_kernel(
        rewiring.indices,
        values,
        rewiring.source,
        rewiring.shape,
        optimizer=optimizer,
        strategy=strategy,
    )


def can_pad(link: Link) -> bool:
    """Whether `link.layer` can be pruned into padded storage (no per-unit weights in between)."""
    return not any(between.weights for between in link.between)


def _shrink_last_axis(layer, keep: np.ndarray, optimizer, strategy) -> None:
    for weight in layer.weights:
        carry(weight, read(weight)[keep], keep, optimizer, strategy)


def _set_input_width(layer, width: int, spec_width: int | None = None) -> None:
    """Record a new input width in a per-unit layer's build config and input spec.

    For the Keras layers between two SparseDense layers (normalisations,
    PReLU), which have no method for it. `spec_width` is the width the
    layer receives when it differs (the capacity of a padded layer before
    it); defaults to `width`.
    """
    spec_width = width if spec_width is None else spec_width
    _keras.set_build_input_width(layer, width)
    spec = layer.input_spec
    if isinstance(spec, keras.layers.InputSpec) and spec.axes:
        last = (spec.ndim or 0) - 1
        spec.axes = {
            axis: spec_width if axis in (-1, last) else size for axis, size in spec.axes.items()
        }


def remove_units(link: Link, keep: np.ndarray, optimizer=None, strategy=None) -> bool:
    """Keep only the units `keep` (sorted) of `link.layer`.

    When both SparseDense layers are `pad_ready` and `can_pad(link)`, the
    kernels shrink within the layers' current storage (see the module
    docstring) and the traced functions stay valid. Otherwise the pruned
    width becomes exact (the pruned layer's units, the next layer's input,
    and the connections of a layer that is not `pad_ready`). The per-unit
    layers in between shrink their weights. Every layer records the new
    width, so the model saves and reloads with it.

    Returns whether storage was re-created: the caller must then
    `refresh_model`.
    """
    layer, nxt = link.layer, link.next
    keep = np.asarray(keep, np.int64)
    width = int(keep.size)
    rewire_layer(
        layer,
        keep_units(layer.live_indices(), (layer.input_dim, layer.units), keep, axis=1),
        optimizer=optimizer,
        strategy=strategy,
    )
    layer.keep_units(keep, optimizer=optimizer, strategy=strategy)
    rewire_layer(
        nxt,
        keep_units(nxt.live_indices(), (nxt.input_dim, nxt.units), keep, axis=0),
        optimizer=optimizer,
        strategy=strategy,
    )
    resized = False
    if not (layer.pad_ready and nxt.pad_ready and can_pad(link)):
        resized = layer.set_capacity(units=width, optimizer=optimizer, strategy=strategy)
        resized = nxt.set_capacity(input_dim=width, optimizer=optimizer, strategy=strategy) or (
            resized
        )
    for between in link.between:
        _shrink_last_axis(between, keep, optimizer, strategy)
        _set_input_width(between, width, layer.capacity[2])
    return resized


def fill(links: list[Link]) -> float:
    """Live connections of the layers of `links` over the connections their storage holds."""
    layers = {id(layer): layer for link in links for layer in (link.layer, link.next)}
    live = sum(layer.nnz for layer in layers.values())
    return live / max(1, sum(layer.capacity[0] for layer in layers.values()))


def should_compact(links: list[Link]) -> bool:
    """Whether the layers of `links` fill less than `MIN_FILL` of their storage.

    Counted in connections, all layers together: padded connections are
    what costs work in every step (a padded width costs only a column of
    zeros), and a re-trace rebuilds every layer at once.
    """
    return fill(links) < MIN_FILL


def compact(links: list[Link], optimizer=None, strategy=None) -> bool:
    """Shrink the storage of every padded layer of `links` to its live size.

    Returns whether any storage changed: the caller then rebuilds the
    model's functions (`refresh_model`).
    """
    changed = False
    for link in links:
        for layer in (link.layer, link.next):
            if layer is not None:
                changed = layer.compact(optimizer, strategy) or changed
        for between in link.between:
            _set_input_width(between, link.layer.units)
    return changed


def resizable(links: list[Link], optimizer=None) -> bool:
    """Whether the SparseDense layers of `links`, and their slots, change shape in place.

    See `SparseDense.set_resizable`. Then a change of their capacity needs
    only `refresh_model(model, retrace=False)`.
    """
    if not all(link.layer.resizable_units for link in links):
        return False
    layers = [layer for link in links for layer in (link.layer, link.next) if layer is not None]
    return all(is_resizable(variable, optimizer) for layer in layers for variable in layer.weights)


def refresh_model(model, retrace: bool = True) -> None:
    """Rebuild what captured the old variable storage or widths.

    A Sequential model with an `Input` rebuilds its symbolic graph (other
    models re-record its shapes) so that `summary()` and
    `model.output_shape` show the current widths. With `retrace` (the
    default) the train/test/predict functions are re-traced on their next
    use; without, they are kept, which is right when only resizable layers
    (`SparseDense.set_resizable`) changed shape.
    """
    if not _keras.rebuild_sequential_graph(model):
        _keras.refresh_symbolic_shapes(model)
    if not retrace:
        return
    model.make_train_function(force=True)
    model.make_test_function(force=True)
    model.make_predict_function(force=True)
    # The re-trace is deliberate: no "excessive retracing" warning for it.
    _keras.omit_retracing_warnings(model)
