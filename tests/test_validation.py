"""Every public argument rejects invalid values with a Keras-style ValueError.

The message must name the argument and end with `Received: name=value`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_npset import (  # noqa: E402
    NeuronPruning,
    PruningSchedule,
    SETEvolution,
    SparseDense,
    TopologyLogger,
    final_width,
    to_dense_model,
)
from keras_npset.export import export_saved_model  # noqa: E402

NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Relative paths below (log dirs, export dirs) resolve inside a temporary folder,
    so a value that is unexpectedly valid cannot write into the working tree."""
    monkeypatch.chdir(tmp_path)


FINAL_WIDTH = {"units": 100, "alpha": 0.1, "n_events": 3, "min_units": 1}


def _final_width(**kwargs):
    return final_width(**{**FINAL_WIDTH, **kwargs})


def _sparse_dense(**kwargs):
    return SparseDense(**{"units": 8, **kwargs})


def _logger(**kwargs):
    return TopologyLogger(**{"log_dir": "logs", **kwargs})


def _export(**kwargs):
    model = keras.Sequential([keras.Input((3,)), SparseDense(2, seed=0)])
    # Only invalid values reach this: nothing is written.
    export_saved_model(**{"model": model, "filepath": "unused-export-dir", **kwargs})


def _events(total_epochs):
    return PruningSchedule(start=1, epochs=2).events(total_epochs)


BAD = {
    _sparse_dense: {
        "units": [0, -3, 2.5, "8", True, None, np.float32(4)],
        "epsilon": [0, -1, NAN, INF, "10", True, None, np.float64(-2)],
        "density": [0, -0.1, 1.5, NAN, "0.5", True],
        "activation": ["nope", 5],
        "use_bias": ["yes", 1, None],
        "kernel_initializer": ["zeros", "nope", None, 3],
        "bias_initializer": ["nope", 5],
        "kernel_regularizer": ["nope", 5],
        "bias_regularizer": ["nope"],
        "activity_regularizer": ["nope"],
        "kernel_constraint": ["nope"],
        "bias_constraint": ["nope", 2.0],
        "kernel_impl": ["cuda", None, "AUTO"],
        "seed": [-1, 1.5, "0", True],
        "initial_units": [0, 3, 16.0, "16"],
    },
    SETEvolution: {
        "zeta": [-0.1, 1, 1.5, NAN, "0.3", True, None],
        "init": ["ones", None, 0.0],
        "seed": [-1, 1.5, "1", True],
        "layers": ["h1", [], [1], ["a", "a"], [""], 5, {"h1"}],
    },
    NeuronPruning: {
        "alpha": [-0.1, 1, NAN, "0.04", None, False],
        "start": [-1, 1.5, "10", True, None],
        "epochs": [-1, 2.0, None],
        "layers": ["h1", [], ("h1", "h1")],
        "criterion": ["degree", None],
        "min_units": [0, -1, 1.5, True, None],
        "seed": [-3, 0.5],
    },
    _logger: {
        "log_dir": [None, "", 5],
        "histogram_freq": [-1, 1.5, True, "1", None],
    },
    PruningSchedule: {
        "start": [-1, 1.5, None, True],
        "epochs": [-1, "4", np.float64(3)],
    },
    _events: {
        "total_epochs": [-1, 2.5, None],
    },
    _final_width: {
        "units": [0, -1, 2.5, None],
        "alpha": [1, -0.1, NAN, "0.1", None],
        "n_events": [-1, 1.5, None],
        "min_units": [0, 1.5],
    },
    _export: {
        "model": [None, "model.keras"],
        "filepath": [None, "", 3],
        "kernel_impl": ["cuda", None],
    },
    to_dense_model: {
        "model": [None, "model.keras", SparseDense(4), keras.Sequential([SparseDense(4)])],
    },
}

CASES = [
    pytest.param(factory, name, value, id=f"{getattr(factory, '__name__', factory)}-{name}-{i}")
    for factory, arguments in BAD.items()
    for name, values in arguments.items()
    for i, value in enumerate(values)
]


@pytest.mark.parametrize(("factory", "name", "value"), CASES)
def test_bad_argument_raises_value_error(factory, name, value):
    with pytest.raises(ValueError) as info:
        factory(**{name: value})
    message = str(info.value)
    assert f"`{name}`" in message, message
    assert message.endswith(f"Received: {name}={value!r}"), message


def test_valid_numpy_scalars_are_accepted():
    layer = SparseDense(
        np.int64(8),
        epsilon=np.float32(2.0),
        seed=np.int64(3),
        use_bias=np.bool_(True),
        initial_units=np.int32(10),
    )
    assert (layer.units, layer.seed, layer.initial_units) == (8, 3, 10)
    config = layer.get_config()
    assert isinstance(config["seed"], int) and type(config["epsilon"]) is float
    SETEvolution(zeta=np.float64(0.2), seed=np.int64(1))
    NeuronPruning(
        alpha=np.float32(0.1), start=np.int64(0), epochs=np.int64(2), min_units=np.int64(2)
    )
    assert final_width(np.int64(100), np.float64(0.1), np.int64(2)) == 81


def test_tiny_epsilon_still_connects():
    layer = SparseDense(2, epsilon=0.01, seed=0)
    layer.build((None, 3))
    assert layer.nnz == 1


def _fit_with(callback):
    model = keras.Sequential(
        [keras.Input((4,)), SparseDense(6, seed=0, name="h1"), SparseDense(2, seed=1, name="out")]
    )
    model.compile("sgd", "mse")
    x = np.zeros((4, 4), "float32")
    model.fit(x, np.zeros((4, 2), "float32"), epochs=1, verbose=0, callbacks=[callback])


@pytest.mark.parametrize(
    "callback",
    [
        SETEvolution(layers=["missing"]),
        NeuronPruning(layers=["missing"]),
        NeuronPruning(layers=["out"]),  # an output layer cannot be pruned
    ],
    ids=["set-unknown", "pruning-unknown", "pruning-output"],
)
def test_layer_names_are_checked_against_the_model(callback):
    with pytest.raises(ValueError, match=r"Received: layers=\["):
        _fit_with(callback)
