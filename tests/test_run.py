"""Tests for keras_npset.experiments.run: every method end to end, tiny."""

import glob
import json
import os
import pathlib

import keras
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from keras_npset.experiments import models
from keras_npset.experiments import run as run_lib
from keras_npset.experiments.config import METHODS, load_config
from keras_npset.schedules import final_width

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("NPSET_DATA_DIR", "/work/shared/datasets"))
RESULT_KEYS = {
    "max_test_accuracy",
    "final_test_accuracy",
    "test_accuracy",
    "hidden_units",
    "params",
    "neurons",
    "epoch_seconds",
    "dense_params",
    "compression",
    "history",
}


def _tiny(tmp_path, method, *extra):
    return load_config(
        None,
        [
            f"model.method={method}",
            f'output.dir="{tmp_path / method}"',
            "data.synthetic_samples=60",
            "data.synthetic_features=20",
            "data.synthetic_informative=3",
            "model.hidden=[16, 16]",
            "model.epsilon=2",
            "model.start=0",
            "model.prune_epochs=1",
            "train.epochs=2",
            "train.batch_size=20",
            "train.verbose=0",
            "model.kernel_impl=sparse_dense_matmul",
            *extra,
        ],
    )


def _tags(folder):
    tags = set()
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in event.summary.value}
    return tags


# ---------------------------------------------------------------- compiling, counting


def test_compiled_model_trains_with_the_papers_loss_or_keras_mse(tmp_path):
    from keras_npset.experiments.data import load_from_config
    from keras_npset.losses import SETSquaredError

    cfg = _tiny(tmp_path, "set")
    dataset = load_from_config(cfg.data, 0)
    model = run_lib.compiled_model(cfg, dataset, cfg.model.hidden)
    assert isinstance(model.loss, SETSquaredError)
    assert model.get_layer("output").activation is keras.activations.sigmoid
    cfg.train.loss = "mse"
    model = run_lib.compiled_model(cfg, dataset, cfg.model.hidden)
    assert model.loss == "mse"
    assert model.get_layer("output").activation is keras.activations.sigmoid


def test_optimizer_decay_is_the_originals_per_step_decay():
    # Original: pdw = m*pdw - lr*dW; W += pdw - wd*W, wd NOT scaled by lr.
    cfg = load_config(None, ["train.learning_rate=0.1", "train.weight_decay=0.01"])
    opt = run_lib.make_optimizer(cfg)
    w = keras.Variable(np.array([2.0, -4.0], "float32"))
    g = np.array([1.0, 0.5], "float32")
    opt.apply_gradients([(g, w)])
    np.testing.assert_allclose(w.numpy(), [2.0, -4.0] - 0.1 * g - 0.01 * np.array([2.0, -4.0]))


# ---------------------------------------------------------------- runs


@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_every_method(tmp_path, method):
    cfg = _tiny(tmp_path, method)
    results = run_lib.run(cfg, log=None)
    out = tmp_path / method
    files = ["config.json", "model.keras", "results.json", "split.json", "tensorboard"]
    if method in models.SPARSE_METHODS:  # the input features ranked by connection strength
        files = sorted([*files, "features.json"])
    assert sorted(os.listdir(out)) == files
    saved = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(saved)
    assert saved["max_test_accuracy"] == max(saved["test_accuracy"])
    assert saved["final_test_accuracy"] == saved["test_accuracy"][-1]
    assert len(saved["test_accuracy"]) == len(saved["epoch_seconds"]) == 2
    assert 0.0 <= saved["max_test_accuracy"] <= 100.0
    assert saved["neurons"] == 20 + sum(saved["hidden_units"])
    assert results["params"] == saved["params"]
    # Two events (epochs 0 and 1): 16 -> 16 - floor(0.64) ... the widths final_width says.
    pruned = final_width(16, 0.04, 2)
    expected = {
        "npset": [pruned, pruned],
        "npset_1st": [pruned, 16],
        "npset_2nd": [16, pruned],
        "direct_set": [pruned, pruned],
        "direct_fc": [pruned, pruned],
    }.get(method, [16, 16])
    assert saved["hidden_units"] == expected

    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model"]["method"] == method and config["seed"] == 0
    assert {"tensorflow", "keras", "numpy", "python"} <= set(config["versions"])

    # The saved model has the final topology and the counted parameters.
    model = keras.saving.load_model(out / "model.keras")
    assert [model.get_layer(n).units for n in ("hidden_1", "hidden_2")] == expected
    assert run_lib.model_summary(model, 2)["params"] == saved["params"]


def test_alpha_pruning_and_tensorboard_tags(tmp_path):
    cfg = _tiny(tmp_path, "npset", "model.alpha=0.25", "train.epochs=3")
    results = run_lib.run(cfg, log=None)
    assert results["hidden_units"] == [final_width(16, 0.25, 2)] * 2 == [9, 9]
    assert results["history"]["neurons/hidden_1"] == [16 - 4, 9, 9]
    tb = tmp_path / "npset" / "tensorboard"
    train_tags = _tags(tb / "train")
    assert {"epoch_loss", "epoch_accuracy", "epoch_neurons/hidden_1", "epoch_params/total"} <= (
        train_tags
    )
    # One clean set: the test split as `test`, scalars once (via the logs, in
    # `train`), degree histograms alone in `topology`.
    assert sorted(os.listdir(tb)) == ["test", "topology", "train"]
    assert {"epoch_loss", "epoch_accuracy"} <= _tags(tb / "test")
    assert _tags(tb / "topology") == {
        f"degree/{layer}/{side}" for layer in ("hidden_1", "hidden_2") for side in ("in", "out")
    } | {"degree/output/in"}
    # Atomic writes leave no temporary files behind and keep the usual permissions.
    assert not [p for p in os.listdir(tmp_path / "npset") if p.startswith(".")]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.json", "config.json", "model.keras"):
        assert (tmp_path / "npset" / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_cross_entropy_zero_init_and_out_criterion(tmp_path):
    cfg = _tiny(
        tmp_path,
        "npset",
        "train.loss=categorical_crossentropy",
        "model.init=zeros",
        "model.criterion=out",
        "output.save_model=false",
        "output.tensorboard=false",
    )
    results = run_lib.run(cfg, log=None)
    assert sorted(os.listdir(tmp_path / "npset")) == [
        "config.json",
        "features.json",
        "results.json",
        "split.json",
    ]
    assert np.isfinite(results["history"]["loss"]).all()


def test_verbose_2_prints_one_short_line_per_epoch_and_each_pruning_event(tmp_path, capsys):
    cfg = _tiny(tmp_path, "npset", "train.verbose=2", "model.alpha=0.2", "output.save_model=false")
    lines = []
    results = run_lib.run(cfg, log=lines.append)
    assert capsys.readouterr().out == ""  # Keras's own epoch line is off
    epochs = [line for line in lines if line.startswith("epoch ")]
    events = [line for line in lines if line.startswith("pruning event")]
    assert len(epochs) == 2 and len(events) == 2  # events at the beginning of epochs 1 and 2
    widths = results["history"]["neurons/hidden_1"]
    assert events[0].startswith(f"pruning event at epoch 1: hidden_1 16 -> {int(widths[0])}, ")
    params = [int(p) for p in results["history"]["params/total"]]
    assert events[1].endswith(f"; params {params[0]:,} -> {params[1]:,}")
    assert "test " in epochs[0] and "val_" not in epochs[0]
    assert f"params {params[1]:,}  " in epochs[1] and ".0000" not in epochs[1]


def test_same_seed_same_run(tmp_path):
    a = run_lib.run(_tiny(tmp_path / "a", "set", "output.save_model=false"), log=None)
    b = run_lib.run(_tiny(tmp_path / "b", "set", "output.save_model=false"), log=None)
    assert a["test_accuracy"] == b["test_accuracy"] and a["params"] == b["params"]


def test_steps_per_execution_trains_the_same_steps(tmp_path):
    """Several steps per call: same batches, same topology changes, same weights."""
    runs = {}
    for spe in (1, 7):
        cfg = _tiny(
            tmp_path / f"spe{spe}",
            "npset",
            "model.kernel_impl=gather",
            "train.batch_size=3",  # 40 training samples: 14 steps, the last of 1 sample
            "train.epochs=3",
            f"train.steps_per_execution={spe}",
        )
        runs[spe] = run_lib.run(cfg, log=None)
        model = keras.models.load_model(os.path.join(cfg.output.dir, "model.keras"))
        runs[spe]["weights"] = [w.numpy() for w in model.weights]
    one, seven = runs[1], runs[7]
    assert seven["steps_per_execution"] == 7 and one["steps_per_execution"] == 1
    assert one["test_accuracy"] == seven["test_accuracy"]
    assert one["history"] == seven["history"] and one["hidden_units"] == seven["hidden_units"]
    for a, b in zip(one["weights"], seven["weights"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_jit_compile_run(tmp_path):
    cfg = _tiny(
        tmp_path, "npset", "model.kernel_impl=auto", "model.alpha=0.25", "train.jit_compile=true"
    )
    results = run_lib.run(cfg, log=None)
    assert len(results["test_accuracy"]) == 2 and results["hidden_units"] != [16, 16]
    model = keras.models.load_model(os.path.join(cfg.output.dir, "model.keras"))
    assert model.jit_compile is True


def test_run_from_small_mat_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(36, 15)).astype(np.int16)
    y = (np.arange(36) % 3 + 1)[:, None]
    scipy.io.savemat(tmp_path / "small.mat", {"X": x, "Y": y})
    cfg = _tiny(tmp_path, "set", f'data.path="{tmp_path / "small.mat"}"', "data.stratify=true")
    results = run_lib.run(cfg, log=None)
    assert results["dataset"] == "small"
    config = json.loads((tmp_path / "set" / "config.json").read_text())
    assert config["dataset"] == {
        "name": "small",
        "n_train": 24,
        "n_test": 12,
        "n_features": 15,
        "n_classes": 3,
    }


def test_run_rejects_bad_data(tmp_path):
    scipy.io.savemat(tmp_path / "one.mat", {"X": np.ones((6, 3)), "Y": np.ones((6, 1))})
    cfg = _tiny(tmp_path, "set", f'data.path="{tmp_path / "one.mat"}"')
    with pytest.raises(ValueError, match="at least 2 classes"):
        run_lib.run(cfg, log=None)


@pytest.mark.skipif(
    not (SHARED / "lung_discrete.mat").exists(), reason=f"{SHARED}/lung_discrete.mat not present"
)
def test_lung_discrete_full_schedule_reaches_table_3_widths(tmp_path):
    # The paper's schedule (start 10, 41 events) needs 51 epochs; one batch per epoch
    # (48 training samples) keeps it fast. Table 3: NPSET 325 + 66 + 66 = 457 neurons.
    # sparse_dense_matmul: the XLA "gather" path recompiles after each of the 41 pruning
    # events (seconds each on CPU), which would make this test take minutes.
    cfg = load_config(
        str(ROOT / "configs" / "lung_discrete.toml"),
        [
            f'data.path="{SHARED / "lung_discrete.mat"}"',
            f'output.dir="{tmp_path}"',
            "train.epochs=51",
            "train.batch_size=48",
            "train.verbose=0",
            "output.save_model=false",
            "output.tensorboard=false",
            "model.kernel_impl=sparse_dense_matmul",
        ],
    )
    results = run_lib.run(cfg, log=None)
    assert results["hidden_units"] == [66, 66]
    assert results["neurons"] == 457
    # Logged at each epoch's end: epoch 9 is the last unpruned one, epoch 10 the first event.
    assert results["history"]["neurons/hidden_1"][9:13] == [300, 288, 277, 266]


@pytest.mark.parametrize("loss", ["mse", "categorical_crossentropy"])
def test_test_set_metrics_equal_keras_evaluate(loss, rng):
    """The per-epoch test-set figures are those Keras's `evaluate` gives."""
    model = models.build_model("set", 20, 4, [16, 16], epsilon=3, seed=0, loss=loss)
    model.compile(
        keras.optimizers.SGD(0.05),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    x = rng.standard_normal((70, 20)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, 70), 4)
    metrics = run_lib.TestSetMetrics(x, y, loss)
    history = model.fit(
        x, y, epochs=2, batch_size=8, verbose=0, validation_data=(x, y), callbacks=[metrics]
    )
    # The callback overwrote Keras's own validation figures with its own.
    keras_loss, keras_accuracy = model.evaluate(x, y, batch_size=256, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], keras_loss, rtol=1e-6)
    assert history.history["val_accuracy"][-1] == keras_accuracy
