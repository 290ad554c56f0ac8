"""How the SparseDense layers of a model are wired, and what they cost.

Neuron pruning needs to know, for each SparseDense layer, which SparseDense
layer consumes its outputs and what sits in between: layers without per-unit
state (Dropout, activations, noise) pass pruned widths through untouched;
normalisation layers have one parameter per unit and are shrunk with it;
anything else stops the chain.
"""

from __future__ import annotations

import dataclasses
import math

import keras

from keras_npset import _keras
from keras_npset.layers import SparseDense

# Layers that act element-wise and hold no per-unit state.
PASSTHROUGH = (
    keras.layers.Dropout,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
# Layers with one weight per unit along the last axis, shrunk with the units.
PER_UNIT = (keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.PReLU)
# `Link.blocker` of a layer that feeds no layer at all: an output layer.
OUTPUT_LAYER = "it does not feed another SparseDense layer (it is an output layer)"


def sparse_layers(model) -> list[SparseDense]:
    """Every SparseDense layer of `model`, in topological order."""
    return [layer for layer in _ordered_layers(model) if isinstance(layer, SparseDense)]


def _ordered_layers(model):
    # Top-level layers of a Sequential or functional model, in order.
    return list(model.layers)


@dataclasses.dataclass
class Link:
    """The path from a SparseDense layer to the next one.

    Attributes:
        layer: the SparseDense layer whose units would be pruned.
        next: the SparseDense layer consuming them, or `None`.
        between: the layers in between, in order: weightless ones (Dropout,
            activations) and per-unit ones (normalisations) that shrink along.
        blocker: why the layer cannot be pruned, or `None`.
    """

    layer: SparseDense
    next: SparseDense | None
    between: list
    blocker: str | None


def _consumers(layer, members):
    """The layers of `members` called on `layer`'s outputs, each once, in call order."""
    out = []
    for op in _keras.outbound_operations(layer):
        if op in members and op not in out:
            out.append(op)
    return out


def links(model) -> list[Link]:
    """A `Link` for every SparseDense layer of `model`."""
    ordered = _ordered_layers(model)
    members = set(ordered)
    # Sequential: list order. Functional: follow the graph's nodes.
    use_nodes = not isinstance(model, keras.Sequential)
    result = []
    for i, layer in enumerate(ordered):
        if not isinstance(layer, SparseDense):
            continue
        between, nxt, blocker = [], None, None
        current, position = layer, i
        while True:
            if use_nodes:
                consumers = _consumers(current, members)
            else:
                consumers = ordered[position + 1 : position + 2]
                position += 1
            if not consumers:
                break
            if len(consumers) > 1:
                blocker = f"its outputs feed several layers ({[c.name for c in consumers]})"
                break
            current = consumers[0]
            if isinstance(current, SparseDense):
                nxt = current
                break
            if isinstance(current, PASSTHROUGH) or (
                isinstance(current, PER_UNIT) and _per_unit(current, layer.units)
            ):
                between.append(current)
            else:
                blocker = (
                    f"it feeds layer {current.name!r} ({type(current).__name__}), which "
                    "neuron pruning cannot shrink"
                )
                break
        if nxt is None and blocker is None:
            blocker = OUTPUT_LAYER
        result.append(Link(layer, nxt if blocker is None else None, between, blocker))
    return result


def _per_unit(layer, units: int) -> bool:
    """Whether every weight of `layer` has one entry per unit of the last axis."""
    return bool(layer.weights) and all(tuple(w.shape) == (units,) for w in layer.weights)


def hidden_links(model) -> list[Link]:
    """Links of the hidden SparseDense layers: those feeding another SparseDense."""
    return [link for link in links(model) if link.next is not None]


def topology_stats(model) -> dict:
    """Live neuron and parameter counts of the SparseDense layers of `model`.

    Keys: `params/<layer>` (connections, biases excluded as in the NPSET
    paper's Table 3), `density/<layer>`, `neurons/<layer>` (units),
    `params/total`, `neurons/total` (input features of the first sparse
    layer plus the units of every hidden SparseDense layer, output layers
    excluded, as Table 3 counts neurons) and `compression` (parameters of
    the fully-connected network of the initial widths divided by the live
    parameters, Table 3's "compression rate").
    """
    stats = {}
    layers = [layer for layer in sparse_layers(model) if layer.built]
    if not layers:
        return stats
    model_links = links(model)
    hidden = {link.layer.name for link in model_links if link.next is not None}
    created = initial_widths(model, model_links)
    params = neurons = fully_connected = 0
    for layer in layers:
        stats[f"params/{layer.name}"] = kernel_params(layer)
        stats[f"density/{layer.name}"] = layer.nnz / float(layer.input_dim * layer.units)
        stats[f"neurons/{layer.name}"] = layer.units
        params += kernel_params(layer)
        if layer.name in hidden:
            neurons += layer.units
        fully_connected += dense_params(created[layer.name])
    neurons += layers[0].input_dim
    stats["params/total"] = params
    stats["neurons/total"] = neurons
    stats["compression"] = fully_connected / max(params, 1)
    return stats


def kernel_params(layer) -> int:
    """Connections of a layer's kernel, biases excluded: the NPSET paper's Table 3 count.

    The live connections of a SparseDense layer; every kernel entry of any other
    layer with a kernel (a `Dense`).
    """
    if isinstance(layer, SparseDense):
        return layer.nnz
    return math.prod(int(n) for n in layer.kernel.shape)


def dense_params(widths) -> int:
    """Connections of fully connected layers of `widths` (inputs first), biases excluded.

    Table 3's FC-MLP count, `f*h1 + h1*h2 + ... + hk*classes` for an MLP of
    `[f, h1, ..., hk, classes]`; `(n_in, n_out)` gives one layer's.
    """
    widths = [int(w) for w in widths]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))


def initial_widths(model, model_links: list[Link] | None = None) -> dict[str, tuple[int, int]]:
    """`(input width, units)` of each SparseDense layer as created (before pruning).

    `model_links` may pass in `links(model)` when the caller has it already.
    """
    layers = sparse_layers(model)
    widths = {layer.name: (layer.input_dim, layer.initial_units) for layer in layers}
    from keras_npset.features import find_selection

    selection = find_selection(model) if layers else None
    if selection is not None and selection.built:  # input pruning: the features it started with
        widths[layers[0].name] = (selection.n_features, layers[0].initial_units)
    for link in model_links if model_links is not None else links(model):
        if link.next is not None:
            widths[link.next.name] = (link.layer.initial_units, widths[link.next.name][1])
    return widths
