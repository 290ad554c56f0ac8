"""Tests for keras_npset.features: importance, FeatureSelection, InputPruning, run files."""

import json

import keras
import numpy as np
import pytest

import keras_npset
from keras_npset import (
    FeatureSelection,
    InputPruning,
    NeuronPruning,
    SETEvolution,
    SparseDense,
    feature_importance,
    feature_ranking,
)
from keras_npset.experiments import run as run_lib
from keras_npset.experiments.config import load_config
from keras_npset.features import find_selection, target_width
from keras_npset.topology import check_indices

N_FEATURES = 30


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype("float32")
    y = keras.utils.to_categorical((x[:, 2] - x[:, 5] > 0).astype(int), 2)
    return x, y


def _model(selection=True, sequential=False):
    layers = [FeatureSelection(name="selection")] if selection else []
    layers += [
        SparseDense(12, epsilon=3, activation="relu", seed=0, name="h1"),
        SparseDense(10, epsilon=3, activation="relu", seed=1, name="h2"),
        SparseDense(2, activation="softmax", seed=2, name="out"),
    ]
    if sequential:
        model = keras.Sequential([keras.Input((N_FEATURES,)), *layers])
    else:
        inputs = keras.Input((N_FEATURES,), name="features")
        x = inputs
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy")
    return model


def test_exported():
    for name in ("feature_importance", "feature_ranking", "InputPruning", "FeatureSelection"):
        assert name in keras_npset.__all__


def test_importance_matches_dense_reference(rng):
    layer = SparseDense(7, epsilon=2, seed=3)
    layer.build((None, 11))
    layer.values.assign(rng.standard_normal(layer.nnz).astype("float32"))
    dense = layer.to_dense_kernel()
    np.testing.assert_allclose(feature_importance(layer), np.abs(dense).sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(
        feature_importance(layer, criterion="degree"), (dense != 0).sum(axis=1)
    )
    model = keras.Sequential([keras.Input((11,)), layer, SparseDense(2)])
    np.testing.assert_allclose(
        feature_importance(model, criterion="strength"), np.abs(dense).sum(axis=1), rtol=1e-6
    )


def _randomise(model, rng):
    for layer in model.layers:
        if isinstance(layer, SparseDense):
            layer.values.assign(rng.standard_normal(layer.nnz).astype("float32"))


def test_path_importance_matches_dense_reference(rng):
    model = _model(selection=False)
    _randomise(model, rng)
    a1, a2, a3 = (
        np.abs(model.get_layer(n).to_dense_kernel()).astype(np.float64) for n in ("h1", "h2", "out")
    )
    expected = a1 @ a2 @ a3 @ np.ones(2)
    np.testing.assert_allclose(feature_importance(model), expected, rtol=1e-10)
    np.testing.assert_allclose(feature_importance(model, criterion="path"), expected, rtol=1e-10)
    np.testing.assert_allclose(
        feature_importance(model, criterion="strength"), a1.sum(axis=1), rtol=1e-6
    )
    # A layer alone has no paths beyond itself: path strength is its strength.
    np.testing.assert_allclose(feature_importance(model.get_layer("h1")), a1.sum(axis=1), rtol=1e-6)
    ranking = feature_ranking(model)
    assert ranking.tolist() == np.lexsort((np.arange(N_FEATURES), -expected)).tolist()


def test_path_importance_stops_at_a_layer_that_is_not_sparse(rng):
    inputs = keras.Input((N_FEATURES,))
    x = SparseDense(12, epsilon=3, activation="relu", seed=0, name="h1")(inputs)
    x = SparseDense(10, epsilon=3, activation="relu", seed=1, name="h2")(x)
    outputs = keras.layers.Dense(2, name="dense_out")(x)
    model = keras.Model(inputs, outputs)
    _randomise(model, rng)
    a1, a2 = (np.abs(model.get_layer(n).to_dense_kernel()).astype(np.float64) for n in ("h1", "h2"))
    np.testing.assert_allclose(feature_importance(model), a1 @ a2 @ np.ones(10), rtol=1e-10)


def test_path_importance_after_input_pruning_indexes_the_full_input(rng):
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[InputPruning(k=8, start=0, epochs=1)])
    selection = find_selection(model)
    kept = selection.kept_indices()
    a1, a2, a3 = (
        np.abs(model.get_layer(n).to_dense_kernel()).astype(np.float64) for n in ("h1", "h2", "out")
    )
    expected = np.zeros(N_FEATURES)
    expected[kept] = a1 @ a2 @ a3 @ np.ones(2)
    np.testing.assert_allclose(feature_importance(model), expected, rtol=1e-10)
    assert sorted(feature_ranking(model)[:8].tolist()) == kept.tolist()


def test_input_pruning_events_print_no_retracing_warning(caplog):
    # Every event re-creates the first layer's storage and re-traces on purpose.
    model = _model()
    x, y = _data()
    with caplog.at_level("WARNING", logger="tensorflow"):
        model.fit(x, y, epochs=9, verbose=0, callbacks=[InputPruning(k=4, start=0, epochs=7)])
    assert find_selection(model).n_kept == 4
    assert [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()] == []


def test_ranking_breaks_ties_by_index():
    layer = SparseDense(3, density=1.0, seed=0)
    layer.build((None, 6))
    # Row strengths 3, 6, 3, 0, 6, 3 (whole rows of 1s and 2s, and one zero row).
    per_row = np.array([1.0, 2.0, 1.0, 0.0, 2.0, 1.0], np.float32)
    layer.values.assign(per_row[layer.indices.numpy()[:, 0]])
    assert feature_ranking(layer).tolist() == [1, 4, 0, 2, 5, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="k=0"):
        InputPruning(k=0)
    with pytest.raises(ValueError, match="start=-1"):
        InputPruning(k=3, start=-1)
    with pytest.raises(ValueError, match="power=0"):
        InputPruning(k=3, power=0)
    with pytest.raises(ValueError, match="criterion='l2'"):
        InputPruning(k=3, criterion="l2")
    with pytest.raises(ValueError, match="criterion='l2'"):
        feature_importance(_model(), criterion="l2")
    x, y = _data()
    with pytest.raises(ValueError, match="k=31"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[InputPruning(k=31)])
    with pytest.raises(ValueError, match="FeatureSelection"):
        _model(selection=False).fit(x, y, epochs=1, verbose=0, callbacks=[InputPruning(k=3)])


def test_target_width_schedule():
    widths = [target_width(100, 10, e, 5, 3.0) for e in range(5)]
    assert widths == sorted(widths, reverse=True) and widths[-1] == 10
    assert [target_width(100, 10, e, 3, 1.0) for e in range(3)] == [70, 40, 10]


class _Invariants(keras.callbacks.Callback):
    """Checks the first layer against a densified twin after every pruning event."""

    def __init__(self, x):
        super().__init__()
        self.x = x
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        selection = self.model.get_layer("selection")
        layer = self.model.get_layer("h1")
        kept = selection.kept_indices()
        self.seen.append((selection.n_kept, layer.input_dim, layer.nnz))
        assert np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < N_FEATURES
        assert layer.input_dim == kept.size
        check_indices(layer.live_indices(), (layer.input_dim, layer.units))
        twin = np.maximum(self.x[:, kept] @ layer.to_dense_kernel() + layer.live_bias(), 0)
        # While neuron pruning keeps it padded, the layer's live units come first.
        outputs = layer(selection(self.x)).numpy()[:, : layer.units]
        np.testing.assert_allclose(outputs, twin, atol=1e-5)
        # Every model output equals the densified network's on the kept columns.
        h = twin
        for name in ("h2", "out"):
            dense = self.model.get_layer(name)
            h = h @ dense.to_dense_kernel() + dense.live_bias()
            h = np.maximum(h, 0) if name == "h2" else h
        probs = np.exp(h - h.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(self.model.predict(self.x, verbose=0), probs, atol=1e-5)


def test_input_pruning_with_set_and_neuron_pruning(tmp_path):
    x, y = _data()
    model = _model()
    before = model.get_layer("h1").nnz
    check = _Invariants(x)
    pruning = InputPruning(k=4, start=1, epochs=2, power=1)
    history = model.fit(
        x,
        y,
        epochs=5,
        batch_size=16,
        verbose=0,
        callbacks=[
            pruning,
            check,
            SETEvolution(seed=0),
            NeuronPruning(alpha=0.1, start=1, epochs=1, seed=0),
        ],
    )
    kept_counts = [seen[0] for seen in check.seen]
    assert kept_counts == [30, 21, 12, 4, 4]
    assert history.history["features/kept"] == [30, 21, 12, 4, 4]
    assert pruning.events == [1, 2, 3]
    layer = model.get_layer("h1")
    # The connections of removed rows are gone; SET keeps nnz constant between events.
    assert layer.nnz < before and check.seen[-1][2] == check.seen[-2][2] == layer.nnz
    # After the last event of the run the layer is exact again (no padded storage).
    assert layer.input_dim == 4 and layer.capacity == (layer.nnz, layer.input_dim, layer.units)
    assert np.all(np.isfinite(history.history["loss"]))
    # Compression counts against the dense network of all 30 features; neurons the kept ones.
    logs = history.history
    assert logs["compression"][-1] == pytest.approx(
        (30 * 12 + 12 * 10 + 10 * 2) / logs["params/total"][-1]
    )
    assert (
        logs["neurons/total"][-1] == 4 + model.get_layer("h1").units + model.get_layer("h2").units
    )
    # Ranking: the kept features first, in the model's column numbering.
    kept = find_selection(model).kept_indices()
    assert sorted(feature_ranking(model)[:4].tolist()) == kept.tolist()
    # Save/load: the full feature vector in, identical predictions out.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.input_shape == (None, N_FEATURES)
    np.testing.assert_array_equal(loaded.get_layer("selection").kept_indices(), kept)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The dense export takes the full vector too, with zero rows for the pruned features.
    dense = keras_npset.to_dense_model(model)
    np.testing.assert_allclose(dense.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # Training continues after loading.
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=[SETEvolution(seed=1)])


def test_set_never_regrows_into_removed_inputs():
    x, y = _data()
    model = _model(sequential=True)
    fit_kw = dict(batch_size=16, verbose=0)
    model.fit(x, y, epochs=1, **fit_kw)
    layer = model.get_layer("h1")
    indices, values = layer.indices.numpy(), layer.values.numpy()
    strongest = np.sort(feature_ranking(model)[:6])
    after = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(after, "values", layer.values.numpy())
    )
    model.fit(x, y, epochs=1, callbacks=[InputPruning(k=6, start=0, epochs=0), after], **fit_kw)
    # The event kept the 6 strongest rows, exactly their connections, renumbered in order.
    assert find_selection(model).kept_indices().tolist() == strongest.tolist()
    rows = np.isin(indices[:, 0], strongest)
    assert layer.input_dim == 6 and layer.nnz == rows.sum()
    # The layer recorded its new input width as the one Keras built it for.
    assert layer._build_shapes_dict["input_shape"][-1] == 6
    np.testing.assert_array_equal(
        layer.indices.numpy()[:, 0], np.searchsorted(strongest, indices[rows, 0])
    )
    np.testing.assert_array_equal(layer.indices.numpy()[:, 1], indices[rows, 1])
    np.testing.assert_array_equal(after.values, values[rows])  # surviving values carried
    # SET many times over: free positions are drawn from the 6 live rows only,
    # and each of them still maps to a kept feature.
    model.fit(x, y, epochs=6, callbacks=[SETEvolution(zeta=0.5, seed=0)], **fit_kw)
    rows = layer.indices.numpy()[:, 0]
    assert rows.max() < 6 and layer.input_dim == 6
    assert find_selection(model).n_kept == 6
    importance = feature_importance(model)
    removed = np.setdiff1d(np.arange(N_FEATURES), find_selection(model).kept_indices())
    assert np.all(importance[removed] == 0)


def test_run_writes_features_and_split(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(
        None,
        [
            "model.method=set",
            f'output.dir="{out}"',
            "data.synthetic_samples=60",
            "data.synthetic_features=20",
            "data.synthetic_informative=3",
            "model.hidden=[16, 16]",
            "model.epsilon=2",
            "model.input_k=5",
            "model.input_start=0",
            "model.input_prune_epochs=1",
            "train.epochs=2",
            "train.batch_size=20",
            "train.verbose=0",
            "output.tensorboard=false",
        ],
    )
    results = run_lib.run(cfg, log=None)
    assert results["neurons"] == 5 + sum(results["hidden_units"])
    features = json.loads((out / "features.json").read_text())
    assert sorted(features["ranking"]) == list(range(20))
    assert features["n_kept"] == 5 and sorted(features["ranking"][:5]) == features["kept"]
    assert features["scores"] == sorted(features["scores"], reverse=True)
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 40 and len(split["test"]) == 20
    assert sorted(split["train"] + split["test"]) == list(range(60))
    from keras_npset.experiments import data as data_lib

    x, y = data_lib.make_madelon(60, 20, 3, seed=0)
    dataset = data_lib.load_from_config(cfg.data, 0)
    np.testing.assert_array_equal(dataset.y_train, y[split["train"]])
    loaded = keras.saving.load_model(str(out / "model.keras"))
    assert find_selection(loaded).n_kept == 5
    assert features["criterion"] == "path" and "|W1| @ |W2|" in features["definition"]
    np.testing.assert_allclose(
        features["scores"], feature_importance(loaded, "path")[features["ranking"]], rtol=1e-6
    )
    with pytest.raises(ValueError, match="model.input_k"):
        load_config(None, ["model.method=dense", "model.input_k=5"])


class _Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("killed")


def test_input_pruning_run_resumes_exactly(tmp_path):
    def cfg(name):
        return load_config(
            None,
            [
                "model.method=npset",
                f'output.dir="{tmp_path / name}"',
                "data.synthetic_samples=60",
                "data.synthetic_features=20",
                "model.hidden=[16, 16]",
                "model.epsilon=2",
                "model.start=0",
                "model.prune_epochs=2",
                "model.input_k=4",
                "model.input_start=1",
                "model.input_prune_epochs=2",
                "train.epochs=4",
                "train.batch_size=20",
                "train.verbose=0",
                "output.tensorboard=false",
            ],
        )

    whole = run_lib.run(cfg("whole"), log=None, resume=True)
    with pytest.raises(RuntimeError, match="killed"):
        run_lib.run(cfg("resumed"), log=None, resume=True, extra_callbacks=[_Crash()])
    resumed = run_lib.run(cfg("resumed"), log=None, resume=True)
    assert resumed["resumed_at_epochs"] == [2]
    assert resumed["history"]["features/kept"] == whole["history"]["features/kept"]
    assert resumed["history"]["features/kept"][-1] == 4
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    for name in ("features.json", "split.json"):
        a = json.loads((tmp_path / "whole" / name).read_text())
        b = json.loads((tmp_path / "resumed" / name).read_text())
        assert a == b


def test_input_pruning_finds_the_informative_features():
    # Labels depend on features 2 and 5 only; pruning down to 2 inputs keeps exactly them.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 40)).astype("float32")
    y = keras.utils.to_categorical((x[:, 2] - x[:, 5] > 0).astype(int), 2)
    inputs = keras.Input((40,))
    h = FeatureSelection()(inputs)
    h = SparseDense(32, epsilon=4, activation="relu", seed=0)(h)
    outputs = SparseDense(2, activation="softmax", seed=1)(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy")
    callbacks = [SETEvolution(seed=0), InputPruning(k=2, start=3, epochs=5, power=1)]
    model.fit(x, y, epochs=12, batch_size=16, verbose=0, callbacks=callbacks)
    assert find_selection(model).kept_indices().tolist() == [2, 5]
    assert sorted(feature_ranking(model)[:2].tolist()) == [2, 5]
