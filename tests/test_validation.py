"""keras_npset.validation, and every public argument rejecting invalid values through it.

A Keras-style ValueError: the message names the argument and ends with
`Received: name=value`.
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
from keras_npset import validation as V  # noqa: E402
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


# ---------------------------------------------------------------- each check, once


def _rejects(check, *args, expected):
    with pytest.raises(ValueError) as info:
        check(*args)
    name, value = args[0], args[1]
    assert str(info.value) == f"Expected `{name}` to be {expected}. Received: {name}={value!r}"


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, "3", None, np.float32(1)])
def test_a_bool_or_float_is_never_an_integer(value):
    assert not V.is_int(value)
    _rejects(V.check_int, "epochs", value, 1, expected="an integer >= 1")


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_numpy_integers_are_integers(value):
    assert V.is_int(value)
    assert V.check_int("epochs", value, 1) == 3 and type(V.check_int("epochs", value)) is int


def test_check_int_bounds():
    assert V.check_int("k", 0, 0) == 0 and V.check_int("k", 5, 1, 5) == 5
    _rejects(V.check_int, "k", -1, 0, expected="an integer >= 0")
    _rejects(V.check_int, "k", 6, 1, 5, expected="an integer in [1, 5]")
    _rejects(V.check_int, "k", 6, None, 5, expected="an integer <= 5")


def test_check_seed():
    assert V.check_seed("seed", None) is None
    assert V.check_seed("seed", np.int64(7)) == 7
    for bad in (-1, True, 1.0, "0"):
        _rejects(V.check_seed, "seed", bad, expected="an integer >= 0 or None")


def test_check_number_and_its_intervals():
    assert V.check_number("w", np.float32(0.5), 0) == 0.5
    assert type(V.check_number("w", np.int64(2))) is float
    for bad in (True, np.bool_(False), "1", None, float("nan"), float("inf")):
        _rejects(V.check_number, "w", bad, expected="a finite number")
    _rejects(V.check_number, "w", -1, 0, expected="a number >= 0")
    _rejects(V.check_number, "f", 2, 0, 1, expected="a number in [0, 1]")
    with pytest.raises(ValueError, match=r"a number in \(0, 1\)\. Received: f=0\.0$"):
        V.check_number("f", 0.0, 0, 1, open_min=True, open_max=True)
    _rejects(V.check_fraction, "zeta", 1, expected="a number in [0, 1)")
    _rejects(V.check_fraction, "zeta", -0.1, expected="a number in [0, 1)")
    assert V.check_fraction("zeta", 0) == 0.0
    _rejects(V.check_positive, "epsilon", 0, expected="a number > 0")
    _rejects(V.check_positive, "density", 1.5, 1, expected="a number in (0, 1]")
    assert V.check_positive("density", 1, 1) == 1.0


def test_check_bool():
    assert V.check_bool("use_bias", np.bool_(True)) is True
    for bad in (1, 0, "yes", None):
        _rejects(V.check_bool, "use_bias", bad, expected="a bool")


def test_check_choice():
    assert V.check_choice("init", "zeros", ("normal", "zeros")) == "zeros"
    _rejects(
        V.check_choice, "init", "ones", ("normal", "zeros"), expected="one of ('normal', 'zeros')"
    )
    _rejects(V.check_choice, "init", None, ["a"], expected="one of ('a',)")
    # A bool is never an int, not even among integer choices.
    assert V.check_choice("verbose", 2, (0, 1, 2)) == 2
    _rejects(V.check_choice, "verbose", True, (0, 1, 2), expected="one of (0, 1, 2)")
    _rejects(V.check_choice, "x", np.array([1, 2]), (1, 2), expected="one of (1, 2)")


def test_check_widths():
    assert V.check_widths("hidden", (3, np.int64(4))) == [3, 4]
    for bad in ([], [0, 4], [True], [2.0], 3, "[3]", None):
        _rejects(V.check_widths, "hidden", bad, expected="a non-empty list of integers >= 1")


def test_check_dir(tmp_path):
    assert V.check_dir("path", tmp_path) == str(tmp_path)
    for bad in ("", None, 3, b"dir"):
        _rejects(V.check_dir, "path", bad, expected="a directory path")


def test_the_app_and_the_library_agree_on_integers(tmp_path):
    """Two places that disagreed before the checks were shared."""
    from keras_npset.checkpoint import TrainingStateCheckpoint
    from keras_npset.experiments import data, data_order

    # data.make_madelon took True for 1 sample.
    with pytest.raises(ValueError, match=r"Expected `n_samples` to be .*Received: n_samples=True"):
        data.make_madelon(n_samples=True)
    # The checkpoint and the batch order refused NumPy integers that everything else takes.
    assert TrainingStateCheckpoint(tmp_path, [], save_freq=np.int64(2)).save_freq == 2
    _, steps = data_order.epoch_batches(np.zeros((4, 2)), np.zeros(4), np.int64(2), 0, 0, 1)
    assert steps == 2 and data_order.execution_steps(np.int64(8), np.int32(24)) == 8
