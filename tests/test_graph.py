"""Model wiring analysis and topology statistics."""

import keras
import pytest

from keras_npset import SparseDense, topology_stats
from keras_npset.graph import (
    dense_params,
    hidden_links,
    initial_widths,
    kernel_params,
    links,
    sparse_layers,
)


def sequential(*middle):
    return keras.Sequential(
        [
            keras.Input((10,)),
            SparseDense(8, name="a"),
            *middle,
            SparseDense(6, name="b"),
            SparseDense(2, name="c"),
        ]
    )


def test_sequential_links_through_passthrough_layers():
    model = sequential(keras.layers.Dropout(0.5), keras.layers.ReLU())
    result = {link.layer.name: link for link in links(model)}
    assert result["a"].next.name == "b"
    assert [type(x).__name__ for x in result["a"].between] == ["Dropout", "ReLU"]
    assert result["b"].next.name == "c" and result["b"].blocker is None
    assert result["c"].next is None and "output layer" in result["c"].blocker
    assert [link.layer.name for link in hidden_links(model)] == ["a", "b"]


def test_per_unit_layers_are_carried_and_others_block():
    model = sequential(keras.layers.BatchNormalization(), keras.layers.LayerNormalization())
    link = links(model)[0]
    assert link.next.name == "b" and len(link.between) == 2
    blocked = sequential(keras.layers.Dense(8, name="dense"))
    link = links(blocked)[0]
    assert link.next is None and "'dense' (Dense)" in link.blocker


def test_functional_links_and_branches():
    inputs = keras.Input((10,))
    a = SparseDense(8, name="a")(inputs)
    b = SparseDense(6, name="b")(keras.layers.Dropout(0.1)(a))
    c = SparseDense(6, name="c")(a)
    outputs = SparseDense(2, name="d")(keras.layers.Add()([b, c]))
    result = {link.layer.name: link for link in links(keras.Model(inputs, outputs))}
    assert "several layers" in result["a"].blocker  # a feeds both b and c
    assert "'add' (Add)" in result["b"].blocker
    assert result["d"].next is None


def test_topology_stats_counts_like_table3():
    model = sequential()
    stats = topology_stats(model)
    a, b, c = sparse_layers(model)
    assert stats["params/total"] == a.nnz + b.nnz + c.nnz
    assert stats["neurons/total"] == 10 + 8 + 6  # inputs + hidden, output excluded
    assert stats["neurons/c"] == 2
    assert stats["density/a"] == pytest.approx(a.nnz / 80)
    assert stats["compression"] == pytest.approx((80 + 48 + 12) / stats["params/total"])
    assert initial_widths(model) == {"a": (10, 8), "b": (8, 6), "c": (6, 2)}


def test_table3_counts():
    # Table 3's FC count for lung_discrete 325-300-300-7; one layer's from its widths.
    assert dense_params([325, 300, 300, 7]) == 189600
    assert dense_params((10, 8)) == 80 and dense_params([5]) == 0
    model = keras.Sequential([keras.Input((10,)), SparseDense(8, epsilon=1, seed=0)])
    model.add(keras.layers.Dense(3, name="dense"))
    assert kernel_params(model.layers[0]) == model.layers[0].nnz < 80
    assert kernel_params(model.get_layer("dense")) == 24  # biases excluded


def test_stats_of_unbuilt_model_are_empty():
    model = keras.Sequential([SparseDense(3)])
    assert topology_stats(model) == {}
