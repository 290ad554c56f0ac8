"""Tests for keras_npset.experiments.models: widths, layers and callbacks of each method."""

import csv
import pathlib

import keras
import numpy as np
import pytest

from keras_npset import SparseDense
from keras_npset.experiments import models
from keras_npset.experiments.config import METHODS, load_config
from keras_npset.schedules import final_width

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _paper_rows():
    with open(ROOT / "benchmarks" / "paper_tables.csv", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def test_final_widths_reproduce_table_3_neurons():
    # 41 events (epochs 10..50) inside a 100-epoch run: 300 -> 66 etc., as Table 3.
    for row in _paper_rows():
        h, f = int(row["hidden"]), int(row["features"])
        widths = models.final_widths([h, h], 0.04, start=10, prune_epochs=40, epochs=100)
        assert f + sum(widths) == int(row["npset_neurons"]), row["dataset"]
    assert models.final_widths([300, 300], 0.04, 10, 40, 51) == [66, 66]
    # A run that ends early only sees the events inside it.
    assert models.final_widths([300, 300], 0.04, 10, 40, 11) == [final_width(300, 0.04, 1)] * 2
    assert models.final_widths([300, 300], 0.04, 10, 40, 100, layers=[1]) == [300, 66]


def test_widths_for_direct_methods():
    cfg = load_config(str(ROOT / "configs" / "lung_discrete.toml"))
    assert models.widths_for("direct_set", cfg) == [66, 66]
    assert models.widths_for("direct_fc", cfg) == [66, 66]
    assert models.widths_for("npset", cfg) == [300, 300]


def test_pruned_layers():
    assert models.pruned_layers("npset", 2) == ["hidden_1", "hidden_2"]
    assert models.pruned_layers("npset_1st", 2) == ["hidden_1"]
    assert models.pruned_layers("npset_2nd", 2) == ["hidden_2"]
    assert models.pruned_layers("set", 2) == []
    with pytest.raises(ValueError, match="Received: n_hidden=1"):
        models.pruned_layers("npset_2nd", 1)


@pytest.mark.parametrize("method", METHODS)
def test_build_model_layers(method):
    model = models.build_model(method, 30, 3, [12, 10], epsilon=2, seed=0)
    names = [layer.name for layer in model.layers[1:]]
    assert names == ["hidden_1", "hidden_2", "output"]
    sparse = isinstance(model.get_layer("output"), SparseDense)
    assert sparse == (method in models.SPARSE_METHODS)
    assert model.get_layer("output").activation is keras.activations.sigmoid
    assert model.output.shape == (None, 3)


def test_build_model_softmax_for_cross_entropy():
    model = models.build_model("dense", 4, 2, [3], loss="categorical_crossentropy")
    assert model.get_layer("output").activation is keras.activations.softmax


def test_build_model_rejects():
    with pytest.raises(ValueError, match="Received: method='mlp'"):
        models.build_model("mlp", 4, 2, [3])
    with pytest.raises(ValueError, match=r"Received: hidden=\[\]"):
        models.build_model("set", 4, 2, [])


def test_callbacks_for():
    cfg = load_config(None, ["model.method=npset_1st"])
    kinds = [type(c).__name__ for c in models.callbacks_for("npset_1st", cfg, log_dir="x")]
    assert kinds == ["SETEvolution", "NeuronPruning", "TopologyLogger"]
    (pruning,) = [c for c in models.callbacks_for("npset_1st", cfg) if hasattr(c, "alpha")]
    assert pruning.layers == ["hidden_1"]
    assert [type(c).__name__ for c in models.callbacks_for("set", cfg)] == ["SETEvolution"]
    assert models.callbacks_for("dense", cfg) == []
    assert models.callbacks_for("direct_fc", cfg) == []


@pytest.mark.parametrize("method", ["dense", "direct_fc", "set"])
def test_dense_and_sparse_layers_take_their_own_initializer(method):
    model = models.build_model(
        method, 400, 3, [50, 50], seed=0,
        kernel_initializer="set_normal", dense_initializer="glorot_uniform",
    )  # fmt: skip
    layer = model.get_layer("hidden_1")
    weights = np.asarray(layer.live_values() if method == "set" else layer.kernel)
    std = float(np.std(weights))
    if method == "set":  # SparseDense values: N(0, 1) / 10
        assert 0.08 < std < 0.12
    else:  # Glorot uniform: sqrt(2 / (fan_in + fan_out)) = sqrt(2 / 450)
        assert abs(std - np.sqrt(2 / 450)) < 0.01
