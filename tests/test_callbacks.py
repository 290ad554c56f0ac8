"""SETEvolution, NeuronPruning and TopologyLogger inside model.fit, against references."""

import concurrent.futures
import copy
import gc
import glob
import os
import warnings
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import (
    NeuronPruning,
    SETEvolution,
    SparseDense,
    TensorBoard,
    TopologyLogger,
    final_width,
    surgery,
    topology,
)
from keras_npset import callbacks as callbacks_module
from keras_npset.optimizer_state import slot_variables
from keras_npset.topology import check_indices, flat_positions, set_removal_mask


def mlp(n_in=30, hidden=(40, 40), n_out=3, epsilon=4, between=(), seed=0):
    layers = [keras.Input((n_in,))]
    for i, width in enumerate(hidden):
        layers.append(
            SparseDense(width, epsilon=epsilon, activation="relu", seed=seed + i, name=f"h{i + 1}")
        )
        layers.extend(factory() for factory in between)
    layers.append(
        SparseDense(n_out, epsilon=epsilon, activation="softmax", seed=seed + 9, name="out")
    )
    return keras.Sequential(layers)


def compiled(model, optimizer=None):
    model.compile(
        optimizer or keras.optimizers.SGD(0.05, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def data(rng, n=96, n_in=30, classes=3):
    return rng.standard_normal((n, n_in)).astype("float32"), rng.integers(0, classes, n)


def sparse_of(model):
    return [layer for layer in model.layers if isinstance(layer, SparseDense)]


def dense_twin_predict(model, x):
    """Forward pass of the model from densified kernels, in NumPy."""
    h = x
    for layer in model.layers:
        if isinstance(layer, SparseDense):
            h = h @ layer.to_dense_kernel() + layer.live_bias()
            h = keras.ops.convert_to_numpy(layer.activation(h))
        else:
            h = keras.ops.convert_to_numpy(layer(h, training=False))
    return h


class Snapshot(keras.callbacks.Callback):
    """Records topology after every epoch (placed after the topology callbacks)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(
            {
                layer.name: (
                    layer.live_indices().copy(),
                    layer.live_values().copy(),
                    (layer.input_dim, layer.units),
                )
                for layer in sparse_of(self.model)
            }
        )


# ---------------------------------------------------------------- SET


def test_set_invariants_after_every_epoch(rng):
    x, y = data(rng)
    model = compiled(mlp())
    before = {layer.name: layer.nnz for layer in sparse_of(model)}
    initial = {layer.name: layer.live_indices().copy() for layer in sparse_of(model)}
    snap = Snapshot()
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[SETEvolution(0.3, seed=1), snap])
    for epoch, state in enumerate(snap.epochs):
        for name, (idx, _, shape) in state.items():
            check_indices(idx, shape)
            assert len(idx) == before[name]
            previous = initial[name] if epoch == 0 else snap.epochs[epoch - 1][name][0]
            changed = (
                1
                - np.isin(flat_positions(idx, shape[1]), flat_positions(previous, shape[1])).mean()
            )
            if epoch < 3 and name != "out":
                assert 0.2 < changed < 0.4, (name, epoch, changed)  # about zeta replaced
            if epoch == 3:
                assert changed == 0  # nothing changes after the last epoch
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-4, atol=1e-5
    )


def test_set_new_connections_start_as_documented(rng):
    model = compiled(mlp())
    model.fit(*data(rng), epochs=1, verbose=0)
    for init in ("normal", "zeros"):
        callback = SETEvolution(zeta=0.5, init=init, seed=3)
        callback.set_model(model)
        callback.on_train_begin()
        layer = model.get_layer("h1")
        old = set(flat_positions(layer.live_indices(), layer.units).tolist())
        callback.evolve()
        flat = flat_positions(layer.live_indices(), layer.units)
        new = np.array([p not in old for p in flat.tolist()])
        fresh = layer.live_values()[new]
        if init == "zeros":
            assert np.all(fresh == 0)
        else:
            assert 0.07 < fresh.std() < 0.13  # N(0, 1) / 10


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        lambda: keras.optimizers.Adam(1e-3),
    ],
)
def test_optimizer_state_travels_with_connections(rng, make_optimizer):
    model = compiled(mlp(), make_optimizer())
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    layer = model.get_layer("h2")
    slots = slot_variables(model.optimizer, layer.values)
    assert len(slots) == (1 if isinstance(model.optimizer, keras.optimizers.SGD) else 2)
    old_flat = flat_positions(layer.live_indices(), layer.units)
    removed = set_removal_mask(layer.live_values(), 0.3)
    old_slots = [s.numpy().copy() for s in slots]
    callback = SETEvolution(zeta=0.3, seed=0)
    callback.set_model(model)
    callback.on_train_begin()
    callback.evolve()
    new_flat = flat_positions(layer.live_indices(), layer.units)
    # Surviving connections: same position, not removed (a removed position may regrow as new).
    position = {p: i for i, p in enumerate(old_flat.tolist()) if not removed[i]}
    kept = np.array([p in position for p in new_flat.tolist()])
    source = np.array([position.get(p, 0) for p in new_flat.tolist()])
    assert 0 < kept.sum() < len(kept)
    for slot, old in zip(slot_variables(model.optimizer, layer.values), old_slots, strict=True):
        np.testing.assert_array_equal(slot.numpy()[kept], old[source[kept]])
        np.testing.assert_array_equal(slot.numpy()[~kept], 0)
    model.fit(x, y, epochs=1, verbose=0)  # the optimizer still knows its variables


@pytest.mark.parametrize("tile", [None, 4])
def test_parallel_evolution_gives_the_same_step(rng, monkeypatch, tile):
    """Planning and merging on a second thread: same topology, values and slots."""
    if tile is not None:
        monkeypatch.setattr(topology, "TILE_COLS", tile)
    pools = []

    class CountingPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", CountingPool)
    x, y = data(rng)
    model = compiled(mlp())
    set_cb = SETEvolution(seed=3)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[set_cb])
    variables = [
        v
        for layer in sparse_of(model)
        for v in (layer.indices, layer.values, *slot_variables(model.optimizer, layer.values))
    ]
    before = [v.numpy() for v in variables]
    rng_state = copy.deepcopy(set_cb._rng.bit_generator.state)
    states = []
    for threshold in (10**12, 0):  # one thread, then two, from the same state
        for v, value in zip(variables, before, strict=True):
            v.assign(value)
        set_cb._rng.bit_generator.state = copy.deepcopy(rng_state)
        monkeypatch.setattr(callbacks_module, "PARALLEL_EVOLUTION_MIN_NNZ", threshold)
        set_cb.evolve()
        for layer in sparse_of(model):
            check_indices(layer.live_indices(), (layer.input_dim, layer.units))
        states.append([v.numpy() for v in variables])
    assert len(pools) == 1  # the second evolution ran on a thread
    assert not np.array_equal(states[0][0], before[0])  # the topology changed
    for one, two in zip(*states, strict=True):
        np.testing.assert_array_equal(one, two)
    model.fit(x, y, epochs=1, verbose=0)  # training continues


def test_set_is_seeded(rng):
    x, y = data(rng)
    topologies = []
    for _ in range(2):
        keras.utils.set_random_seed(9)
        model = compiled(mlp())
        model.fit(x, y, epochs=3, shuffle=False, verbose=0, callbacks=[SETEvolution(seed=4)])
        topologies.append(model.get_layer("h1").live_indices())
    np.testing.assert_array_equal(*topologies)


def test_set_only_named_layers(rng):
    model = compiled(mlp())
    h2_before = model.get_layer("h2").live_indices().copy()
    h1_before = model.get_layer("h1").live_indices().copy()
    model.fit(*data(rng), epochs=2, verbose=0, callbacks=[SETEvolution(layers=["h1"], seed=0)])
    np.testing.assert_array_equal(model.get_layer("h2").live_indices(), h2_before)
    assert not np.array_equal(model.get_layer("h1").live_indices(), h1_before)


def test_save_load_after_evolution_then_train(tmp_path, rng):
    x, y = data(rng)
    model = compiled(mlp())
    model.fit(x, y, epochs=3, verbose=0, callbacks=[SETEvolution(seed=0)])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    history = loaded.fit(x, y, epochs=3, verbose=0, callbacks=[SETEvolution(seed=1)])
    assert np.isfinite(history.history["loss"]).all()
    for layer in sparse_of(loaded):
        check_indices(layer.live_indices(), (layer.input_dim, layer.units))


# ---------------------------------------------------------------- pruning


def run_schedule(model, callback, epochs):
    """Drive the pruning callback's epoch hooks without training."""
    callback.set_model(model)
    callback.set_params({"epochs": epochs})
    callback.on_train_begin()
    widths = []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        widths.append([layer.units for layer in sparse_of(model)])
    callback.on_train_end()
    return widths


def test_paper_schedule_41_events_reaches_table3_widths():
    model = compiled(mlp(n_in=325, hidden=(300, 300), n_out=7, epsilon=10))
    callback = NeuronPruning(alpha=0.04, start=10, epochs=40, seed=0)
    widths = run_schedule(model, callback, 60)
    assert callback.events == list(range(10, 51))
    expected = 300
    for epoch, row in enumerate(widths):
        if 10 <= epoch <= 50:
            expected -= int(np.floor(0.04 * expected))
        assert row == [expected, expected, 7], epoch
    assert widths[-1][:2] == [66, 66]  # Table 3, lung_discrete
    layers = sparse_of(model)
    for a, b in zip(layers, layers[1:], strict=False):
        assert b.input_dim == a.units
        check_indices(b.live_indices(), (b.input_dim, b.units))


def test_pruning_equals_zeroing_outgoing_weights(rng):
    x, y = data(rng)
    model = compiled(mlp())
    model.fit(x, y, epochs=1, verbose=0)
    h1, h2 = model.get_layer("h1"), model.get_layer("h2")
    # Reference: the unpruned model with the removed neurons' outgoing weights zeroed.
    callback = NeuronPruning(
        alpha=0.25, start=0, epochs=0, layers=["h1"], criterion="total", seed=0
    )
    callback.set_model(model)
    callback.on_train_begin()
    in_deg = np.bincount(h1.live_indices()[:, 1], minlength=h1.units)
    out_deg = np.bincount(h2.live_indices()[:, 0], minlength=h1.units)
    degree = in_deg + out_deg
    w2 = h2.to_dense_kernel()
    callback.prune()
    assert h1.units == 30 and h2.input_dim == 30
    kept_degrees = np.sort(degree)[10:]
    # The kept neurons are those with the most connections.
    assert (
        np.sort(
            np.bincount(h1.live_indices()[:, 1], minlength=30)
            + np.bincount(h2.live_indices()[:, 0], minlength=30)
        ).tolist()
        == kept_degrees.tolist()
    )
    # Identify the kept neurons by matching h2's surviving rows.
    w2_new = h2.to_dense_kernel()
    kept = [
        next(i for i in range(40) if np.array_equal(w2[i], row) and degree[i] >= kept_degrees[0])
        for row in w2_new
    ]
    removed = np.setdiff1d(np.arange(40), kept)
    assert len(removed) == 10
    hidden = np.maximum(x @ model.get_layer("h1").to_dense_kernel(), 0)  # sanity of shapes
    assert hidden.shape == (96, 30)
    w2_zeroed = w2.copy()
    w2_zeroed[removed] = 0
    np.testing.assert_allclose(w2_new, w2_zeroed[kept])
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-4, atol=1e-5
    )


def test_pruned_predictions_match_unpruned_with_zeroed_rows(rng):
    x, y = data(rng)
    model = compiled(mlp(hidden=(25,)))
    model.fit(x, y, epochs=1, verbose=0)
    h1, out = model.get_layer("h1"), model.get_layer("out")
    w1, b1, w_out, b_out = (
        h1.to_dense_kernel(),
        h1.live_bias(),
        out.to_dense_kernel(),
        out.live_bias(),
    )
    callback = NeuronPruning(alpha=0.4, start=0, epochs=0, seed=2)
    callback.set_model(model)
    callback.on_train_begin()
    callback.prune()
    surviving_columns = {tuple(column) for column in h1.to_dense_kernel().T}
    kept = np.array([i for i in range(25) if tuple(w1.T[i]) in surviving_columns])
    assert len(kept) == 15
    zeroed = w_out.copy()
    zeroed[np.setdiff1d(np.arange(25), kept)] = 0
    hidden = np.maximum(x @ w1 + b1, 0)
    logits = hidden @ zeroed + b_out
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_default_criterion_is_the_papers_outgoing_connections():
    assert NeuronPruning().criterion == "out"
    assert NeuronPruning().get_config()["criterion"] == "out"


@pytest.mark.parametrize("criterion", ["total", "out", "in"])
def test_kept_neurons_have_most_connections(rng, criterion):
    model = compiled(mlp(hidden=(50, 20), epsilon=2))
    h1, h2 = model.get_layer("h1"), model.get_layer("h2")
    in_deg = np.bincount(h1.live_indices()[:, 1], minlength=50)
    out_deg = np.bincount(h2.live_indices()[:, 0], minlength=50)
    degree = {"total": in_deg + out_deg, "out": out_deg, "in": in_deg}[criterion]
    callback = NeuronPruning(
        alpha=0.3, start=0, epochs=0, layers=["h1"], criterion=criterion, seed=1
    )
    run_schedule(model, callback, 1)
    new_in = np.bincount(h1.live_indices()[:, 1], minlength=35)
    new_out = np.bincount(h2.live_indices()[:, 0], minlength=35)
    new_degree = {"total": new_in + new_out, "out": new_out, "in": new_in}[criterion]
    assert new_degree.min() >= np.sort(degree)[15 - 1]


@pytest.mark.parametrize("tile", [None, 4])
def test_set_and_pruning_together_keep_invariants(rng, tmp_path, monkeypatch, tile):
    if tile is not None:  # layers wider than a tile: tile order throughout
        monkeypatch.setattr(topology, "TILE_COLS", tile)
    x, y = data(rng)
    for order in (0, 1):
        model = compiled(mlp(between=[lambda: keras.layers.Dropout(0.1)]))
        callbacks = [SETEvolution(seed=0), NeuronPruning(alpha=0.2, start=1, epochs=2, seed=0)]
        snap = Snapshot()
        history = model.fit(
            x,
            y,
            epochs=5,
            batch_size=16,
            verbose=0,
            callbacks=(callbacks if order == 0 else callbacks[::-1]) + [snap],
        )
        assert np.isfinite(history.history["loss"]).all()
        widths = [state["h1"][2][1] for state in snap.epochs]
        assert widths == [40, 32, 26, 21, 21]
        for state in snap.epochs:
            for idx_, _, shape in state.values():
                check_indices(idx_, shape)
        layers = sparse_of(model)
        for a, b in zip(layers, layers[1:], strict=False):
            assert b.input_dim == a.units
        np.testing.assert_allclose(
            model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-4, atol=1e-5
        )
        model.save(tmp_path / f"m{order}.keras")
        loaded = keras.models.load_model(tmp_path / f"m{order}.keras")
        np.testing.assert_allclose(
            model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6
        )
        assert [layer.units for layer in sparse_of(loaded)] == [21, 21, 3]
        loaded.fit(x, y, epochs=1, verbose=0)


def test_pruning_keeps_surviving_optimizer_state(rng):
    x, y = data(rng)
    model = compiled(mlp(), keras.optimizers.Adam(1e-3))
    model.fit(x, y, epochs=1, verbose=0)
    h1, h2 = model.get_layer("h1"), model.get_layer("h2")
    bias_slots = [s.numpy().copy() for s in slot_variables(model.optimizer, h1.bias)]
    old_bias = h1.live_bias().copy()
    callback = NeuronPruning(alpha=0.5, start=0, epochs=0, layers=["h1"], seed=0)
    run_schedule(model, callback, 1)
    kept = np.array([int(np.flatnonzero(old_bias == b)[0]) for b in h1.live_bias()])
    for slot, old in zip(slot_variables(model.optimizer, h1.bias), bias_slots, strict=True):
        assert slot.shape == (20,)
        np.testing.assert_array_equal(slot.numpy(), old[kept])
    assert slot_variables(model.optimizer, h2.values)[0].shape == h2.values.shape
    model.fit(x, y, epochs=1, verbose=0)


class PaddingRecord(keras.callbacks.Callback):
    """After every epoch: padding state, train function, traces, and that padding is zero.

    `traces` counts calls of `SparseDense.call`, which run only while a
    function is traced (`count_traces` installs the counter).
    """

    traced = [0]

    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        fn = self.model.train_function
        self.epochs.append(
            {
                "ready": {layer.name: layer.pad_ready for layer in sparse_of(self.model)},
                "padded": {layer.name: layer.padded for layer in sparse_of(self.model)},
                "capacity": [layer.capacity for layer in sparse_of(self.model)],
                "function": fn,
                "traces": self.traced[0],
            }
        )
        assert_padding_is_zero(self.model)


def assert_padding_is_zero(model):
    """Padding holds index -1 and exact zeros, in the weights and the optimizer slots."""
    for layer in sparse_of(model):
        n_in, units = layer.input_dim, layer.units
        check_indices(layer.live_indices(), (n_in, units))
        assert layer.live_values().shape == (layer.nnz,)
        np.testing.assert_array_equal(layer.indices.numpy()[layer.nnz :], -1)
        np.testing.assert_array_equal(layer.values.numpy()[layer.nnz :], 0)
        for slot in slot_variables(model.optimizer, layer.values):
            np.testing.assert_array_equal(slot.numpy()[layer.nnz :], 0)
        np.testing.assert_array_equal(layer.bias.numpy()[units:], 0)
        for slot in slot_variables(model.optimizer, layer.bias):
            np.testing.assert_array_equal(slot.numpy()[units:], 0)
    layers = sparse_of(model)
    for a, b in zip(layers, layers[1:], strict=False):
        assert b.input_dim == a.units
        assert b.capacity[1] == a.capacity[2]


@pytest.mark.parametrize("fit_epochs", [6, 3])
def test_padding_only_while_pruning_continues(rng, fit_epochs):
    """Layers pad between events, and are exact after the last one.

    With 6 epochs the schedule's last event (epoch 3) comes before the end of
    training; with 3, the run ends first and its last epoch's event is the last.
    The layers stay resizable and padding-aware (exact storage needs no
    other kernels), so the last event re-traces nothing.
    """
    x, y = data(rng)
    model = compiled(mlp())
    record = PaddingRecord()
    pruning = NeuronPruning(alpha=0.2, start=1, epochs=2, seed=0)
    model.fit(x, y, epochs=fit_epochs, batch_size=16, verbose=0, callbacks=[pruning, record])
    last = min(3, fit_epochs - 1)
    assert pruning.events == list(range(1, last + 1))
    assert all(record.epochs[0]["ready"].values())  # traced padding-aware from the start
    assert not any(record.epochs[0]["padded"].values())  # before the first event
    for epoch in range(1, last):  # between events the resized layers pad
        assert all(record.epochs[epoch]["padded"].values()), (epoch, record.epochs[epoch])
    for epoch in range(last, fit_epochs):
        state = record.epochs[epoch]
        assert not any(state["padded"].values()), (epoch, state)
        assert all(state["ready"].values()), (epoch, state)
    assert all(layer.resizable for layer in sparse_of(model))
    assert [layer.resizable_units for layer in sparse_of(model)] == [True, True, False]
    assert [e["function"] is record.epochs[0]["function"] for e in record.epochs] == [
        True
    ] * fit_epochs
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-5, atol=1e-6
    )
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # exact shapes train on


@pytest.fixture
def count_traces(monkeypatch):
    counter = [0]
    call = SparseDense.call

    def counting_call(self, inputs):
        counter[0] += 1
        return call(self, inputs)

    monkeypatch.setattr(SparseDense, "call", counting_call)
    monkeypatch.setattr(PaddingRecord, "traced", counter)
    return counter


@pytest.mark.parametrize("min_fill", [None, 0.9])
def test_pruning_within_capacity_does_not_retrace(rng, count_traces, monkeypatch, min_fill):
    """No event re-traces the train function; padding stays zero.

    The paper's schedule (4% per event) on a small network with SGD, momentum
    and weight decay: every epoch checks that the padding of weights and
    slots is exactly zero after the training steps. An event that keeps
    every capacity keeps the storage; with the default `MIN_FILL` only the
    last event shrinks it, with a high one some events in between do too.
    The pruned layers are resizable, so neither kind re-traces.
    """
    if min_fill is not None:
        monkeypatch.setattr(surgery, "MIN_FILL", min_fill)
    x, y = data(rng, n=64)
    model = compiled(
        mlp(hidden=(60, 50)), keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-3)
    )
    record = PaddingRecord()
    pruning = NeuronPruning(alpha=0.04, start=1, epochs=20, seed=0)
    model.fit(
        x, y, epochs=24, batch_size=8, verbose=0, callbacks=[SETEvolution(seed=0), pruning, record]
    )
    epochs = record.epochs
    kept = [e for e in range(2, 21) if epochs[e]["capacity"] == epochs[e - 1]["capacity"]]
    rebuilt = [e for e in range(2, 22) if epochs[e]["capacity"] != epochs[e - 1]["capacity"]]
    if min_fill is None:
        assert rebuilt == [21] and len(kept) == 19, (kept, rebuilt)
    else:
        assert len(kept) >= 8 and 3 <= len(rebuilt) <= 10, (kept, rebuilt)
    for e in kept:
        assert any(epochs[e]["padded"].values())
    for e in range(1, len(epochs)):
        assert epochs[e]["function"] is epochs[e - 1]["function"], e
        assert epochs[e]["traces"] == epochs[e - 1]["traces"], e
    assert not any(epochs[-1]["padded"].values())
    assert [layer.units for layer in sparse_of(model)] == [
        final_width(60, 0.04, 21),
        final_width(50, 0.04, 21),
        3,
    ]
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-5, atol=1e-6
    )


def test_looped_padded_kernels_train_bitwise_like_whole_storage(monkeypatch):
    """The pruning phase's loop over the live connections (`kernels.chunk_for`)
    changes what is computed by nothing: the same NPSET run with the padded
    kernels looped, in chunks that do not divide the storage, and with them
    reading the whole storage, ends with bitwise equal weights, and its
    predictions are its densified twin's."""
    from keras_npset import kernels

    def run(loop):
        monkeypatch.setattr(kernels, "LOOP_MIN_CAPACITY", 0 if loop else 10**9)
        monkeypatch.setattr(kernels, "CHUNK", 23)
        keras.utils.set_random_seed(0)
        x, y = data(np.random.default_rng(5), n=64)
        model = compiled(mlp(hidden=(60, 50)))
        chunks = [kernels.chunk_for(layer.capacity[0]) for layer in sparse_of(model)]
        assert chunks == ([23] * 3 if loop else [0] * 3)
        assert all(layer.capacity[0] % 23 for layer in sparse_of(model))  # a moved-back chunk
        callbacks = [SETEvolution(seed=0), NeuronPruning(alpha=0.1, start=1, epochs=4, seed=0)]
        model.fit(x, y, epochs=8, batch_size=8, verbose=0, callbacks=callbacks)
        return model, x

    looped, x = run(loop=True)
    whole, _ = run(loop=False)
    for a, b in zip(sparse_of(looped), sparse_of(whole), strict=True):
        assert (a.units, a.input_dim) == (b.units, b.input_dim)
        np.testing.assert_array_equal(a.live_indices(), b.live_indices())
        np.testing.assert_array_equal(a.live_values(), b.live_values())
        np.testing.assert_array_equal(a.live_bias(), b.live_bias())
    np.testing.assert_allclose(
        looped.predict(x, verbose=0), dense_twin_predict(looped, x), rtol=1e-5, atol=1e-6
    )


def test_save_while_padded_holds_live_widths_and_slots(rng, tmp_path):
    """`model.save` inside `fit` during the pruning phase writes the live part only."""
    x, y = data(rng)
    model = compiled(mlp(), keras.optimizers.Adam(1e-2))
    saved = {}

    def save(epoch, logs):
        if epoch == 2:
            assert any(layer.padded for layer in sparse_of(model))
            model.save(tmp_path / "padded.keras")
            saved["predictions"] = model.predict(x, verbose=0)
            saved["twin"] = dense_twin_predict(model, x)
            saved["units"] = [layer.units for layer in sparse_of(model)]
            saved["slots"] = {
                layer.name: [
                    s.numpy()[: layer.nnz] for s in slot_variables(model.optimizer, layer.values)
                ]
                for layer in sparse_of(model)
            }

    model.fit(
        x,
        y,
        epochs=5,
        batch_size=16,
        verbose=0,
        callbacks=[
            NeuronPruning(alpha=0.1, start=1, epochs=3, seed=0),
            keras.callbacks.LambdaCallback(on_epoch_end=save),
        ],
    )
    np.testing.assert_allclose(saved["predictions"], saved["twin"], rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras skipping the optimizer's variables
        loaded = keras.models.load_model(tmp_path / "padded.keras")
    assert [layer.units for layer in sparse_of(loaded)] == saved["units"]
    assert not any(layer.padded for layer in sparse_of(loaded))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), saved["predictions"], atol=1e-6)
    for layer in sparse_of(loaded):
        check_indices(layer.indices.numpy(), (layer.input_dim, layer.units))
        for slot, old in zip(
            slot_variables(loaded.optimizer, layer.values), saved["slots"][layer.name], strict=True
        ):
            np.testing.assert_array_equal(slot.numpy(), old)
    loaded.fit(x, y, epochs=1, verbose=0)


def test_stopping_mid_schedule_leaves_exact_layers(rng, tmp_path):
    x, y = data(rng)
    model = compiled(mlp())

    def stop(epoch, logs):
        if epoch == 2:
            model.stop_training = True

    model.fit(
        x,
        y,
        epochs=8,
        batch_size=16,
        verbose=0,
        callbacks=[
            NeuronPruning(alpha=0.1, start=1, epochs=5, seed=0),
            keras.callbacks.LambdaCallback(on_epoch_end=stop),
        ],
    )
    assert [layer.units for layer in sparse_of(model)] == [final_width(40, 0.1, 2)] * 2 + [3]
    # Exact, in their resizable storage (which keeps the padding-aware kernels).
    assert not any(layer.padded for layer in sparse_of(model))
    assert all(layer.resizable and layer.pad_ready for layer in sparse_of(model))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-5, atol=1e-6
    )
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    model.fit(x, y, epochs=1, verbose=0)


def test_prune_called_directly_pads_then_compacts(rng, tmp_path):
    x, y = data(rng)
    model = compiled(mlp())
    model.fit(x, y, epochs=1, verbose=0)
    pruning = NeuronPruning(alpha=0.2, start=0, epochs=5, seed=0)
    pruning.set_model(model)
    pruning.on_train_begin()
    pruning.prune()
    assert all(layer.padded and layer.pad_ready for layer in sparse_of(model))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-5, atol=1e-6
    )
    model.save(tmp_path / "padded.keras")
    loaded = keras.models.load_model(tmp_path / "padded.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    pruning.prune(last=True)
    assert not any(layer.padded for layer in sparse_of(model))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-5, atol=1e-6
    )


def test_old_storage_is_released(rng):
    x, y = data(rng)
    model = compiled(mlp())
    model.fit(x, y, epochs=1, verbose=0)
    old = weakref.ref(model.get_layer("h1").values.value)
    callback = NeuronPruning(alpha=0.1, start=0, epochs=3, seed=0)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[callback])
    gc.collect()
    assert old() is None


def test_batch_normalization_in_between_is_shrunk(rng, tmp_path):
    x, y = data(rng)
    model = compiled(mlp(between=[keras.layers.BatchNormalization]))
    history = model.fit(
        x, y, epochs=3, verbose=0, callbacks=[NeuronPruning(alpha=0.25, start=1, epochs=1, seed=0)]
    )
    assert np.isfinite(history.history["loss"]).all()
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [w.shape for w in bn[0].weights] == [(23,)] * 4  # 40 -> 30 -> 23
    np.testing.assert_allclose(
        model.predict(x, verbose=0), dense_twin_predict(model, x), rtol=1e-4, atol=1e-4
    )
    model.save(tmp_path / "bn.keras")
    loaded = keras.models.load_model(tmp_path / "bn.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)


def test_functional_model_pruning_and_summary(rng, tmp_path):
    inputs = keras.Input((30,))
    h = SparseDense(40, activation="relu", epsilon=4, seed=0, name="h1")(inputs)
    h = keras.layers.Dropout(0.1)(h)
    h = SparseDense(30, activation="relu", epsilon=4, seed=1, name="h2")(h)
    outputs = SparseDense(3, activation="softmax", seed=2, name="out")(h)
    model = compiled(keras.Model(inputs, outputs))
    x, y = data(rng)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[NeuronPruning(alpha=0.5, start=1, epochs=0)])
    assert (model.get_layer("h1").units, model.get_layer("h2").units) == (20, 15)
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    text = "\n".join(lines)
    assert "(None, 20)" in text and "(None, 15)" in text
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def test_sequential_summary_shows_current_widths(rng):
    model = compiled(mlp())
    run_schedule(model, NeuronPruning(alpha=0.5, start=0, epochs=0), 1)
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert "(None, 20)" in "\n".join(lines)
    assert model.output_shape == (None, 3)


def test_alpha_zero_min_units_and_empty_schedule(rng):
    model = compiled(mlp())
    callback = NeuronPruning(alpha=0.0, start=0, epochs=5)
    assert run_schedule(model, callback, 6)[-1] == [40, 40, 3]
    callback = NeuronPruning(alpha=0.5, start=0, epochs=10, min_units=7)
    assert run_schedule(model, callback, 11)[-1] == [7, 7, 3]
    callback = NeuronPruning(alpha=0.5, start=20, epochs=10)
    assert run_schedule(model, callback, 11)[-1] == [7, 7, 3]
    assert callback.events == []


def test_first_and_second_layer_variants(rng):
    for layers, expected in ((["h1"], [20, 40, 3]), (["h2"], [40, 20, 3])):
        model = compiled(mlp())
        run_schedule(model, NeuronPruning(alpha=0.5, start=0, epochs=0, layers=layers), 1)
        assert [layer.units for layer in sparse_of(model)] == expected


def test_final_widths_match_final_width_helper():
    model = compiled(mlp(hidden=(100, 60)))
    run_schedule(model, NeuronPruning(alpha=0.1, start=2, epochs=6), 12)
    assert [layer.units for layer in sparse_of(model)][:2] == [
        final_width(100, 0.1, 7),
        final_width(60, 0.1, 7),
    ]


# ---------------------------------------------------------------- logging


def event_tags(log_dir):
    tags = set()
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.mark.parametrize("tensorboard_first", [True, False])
def test_logs_reach_history_and_tensorboard_in_any_order(rng, tmp_path, tensorboard_first):
    x, y = data(rng)
    model = compiled(mlp())
    board = keras.callbacks.TensorBoard(str(tmp_path))
    ours = [
        SETEvolution(seed=0),
        NeuronPruning(alpha=0.25, start=1, epochs=0, seed=0),
        TopologyLogger(str(tmp_path)),
    ]
    callbacks = [board, *ours] if tensorboard_first else [*ours, board]
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=callbacks)
    h = history.history
    assert h["neurons/h1"] == [40, 30, 30]
    assert h["neurons/out"] == [3, 3, 3]
    assert h["neurons/total"] == [30 + 80, 30 + 60, 30 + 60]
    assert h["params/total"][-1] == sum(layer.nnz for layer in sparse_of(model))
    assert h["params/h1"][-1] == model.get_layer("h1").nnz
    dense_params = 30 * 40 + 40 * 40 + 40 * 3
    np.testing.assert_allclose(h["compression"][-1], dense_params / h["params/total"][-1])
    assert h["density/h2"][-1] == pytest.approx(model.get_layer("h2").nnz / (30 * 30))
    assert not any(key.startswith("val_params") or key.startswith("val_neurons") for key in h)
    tags = event_tags(tmp_path)
    for tag in (
        "epoch_neurons/total",
        "epoch_params/total",
        "epoch_params/h1",
        "epoch_compression",
        "degree/h1/in",
        "degree/h1/out",
        "degree/out/in",
    ):
        assert tag in tags, (tag, sorted(tags))
    # The patch is removed after fit.
    assert "_get_metrics_result_or_logs" not in model.__dict__


def run_tags(log_dir):
    """`{run: tags}` of every run (subfolder) of a TensorBoard log directory."""
    runs = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        run = os.path.relpath(os.path.dirname(path), log_dir)
        for event in tf.compat.v1.train.summary_iterator(path):
            runs.setdefault(run, set()).update(value.tag for value in event.summary.value)
    return runs


def test_one_clean_set_of_tensorboard_tags(rng, tmp_path):
    """Scalars once (via the logs), degree histograms, weight histograms without indices."""
    x, y = data(rng)
    model = compiled(mlp(hidden=(40,)))
    callbacks = [
        SETEvolution(seed=0),
        TopologyLogger(str(tmp_path)),
        TensorBoard(str(tmp_path), histogram_freq=1, validation_name="test"),
    ]
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y), callbacks=callbacks)
    runs = run_tags(tmp_path)
    assert set(runs) == {"train", "test", "topology"}
    assert runs["topology"] == {"degree/h1/in", "degree/h1/out", "degree/out/in"}
    histograms = {tag for tag in runs["train"] if tag.endswith("/histogram")}
    assert histograms == {
        f"{model.name}/{layer}/{weight}/histogram"
        for layer in ("h1", "out")
        for weight in ("values", "bias")
    }
    scalars = runs["train"] - histograms - {"keras"}  # "keras": the model config (write_graph)
    assert {"epoch_neurons/h1", "epoch_params/total", "epoch_loss", "epoch_accuracy"} <= scalars
    assert not [tag for tag in scalars if not tag.startswith("epoch_")], scalars
    assert {"epoch_loss", "epoch_accuracy"} <= runs["test"]


def test_tensorboard_histograms_show_live_values_only(rng, tmp_path):
    x, y = data(rng)
    model = compiled(mlp(hidden=(40,)))
    board = TensorBoard(str(tmp_path), histogram_freq=1)
    board.set_model(model)
    layer = model.get_layer("h1")
    assert callbacks_module._histogram_value(layer, layer.indices) is None
    np.testing.assert_array_equal(
        callbacks_module._histogram_value(layer, layer.values), layer.live_values()
    )
    model.fit(x, y, epochs=1, verbose=0, callbacks=[board])
    assert "validation" not in run_tags(tmp_path)  # no validation: no run


@pytest.mark.parametrize("name", ["", "train", "a/b", "..", None])
def test_tensorboard_rejects_bad_validation_name(tmp_path, name):
    with pytest.raises(ValueError, match="validation_name"):
        TensorBoard(str(tmp_path), validation_name=name)


def test_callbacks_reset_state_between_fits(rng):
    x, y = data(rng)
    model = compiled(mlp())
    callback = NeuronPruning(alpha=0.25, start=0, epochs=0, seed=0)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.events == [0]
    assert model.get_layer("h1").units == 23  # 40 -> 30 -> 23


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"zeta": 1.0}, "zeta"),
        ({"zeta": -0.1}, "zeta"),
        ({"zeta": "0.3"}, "zeta"),
        ({"init": "uniform"}, "init"),
        ({"seed": 2.0}, "seed"),
        ({"layers": "h1"}, "layers"),
        ({"layers": []}, "layers"),
    ],
)
def test_set_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"Received: {name}="):
        SETEvolution(**kwargs)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.01}, "alpha"),
        ({"start": -1}, "start"),
        ({"epochs": -5}, "epochs"),
        ({"criterion": "weight"}, "criterion"),
        ({"min_units": 0}, "min_units"),
        ({"layers": [3]}, "layers"),
    ],
)
def test_pruning_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"Received: {name}="):
        NeuronPruning(**kwargs)


def test_unknown_layer_names_and_models_without_sparse_layers(rng):
    x, y = data(rng)
    model = compiled(mlp())
    with pytest.raises(ValueError, match=r"unknown: \['nope'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[SETEvolution(layers=["nope"])])
    with pytest.raises(ValueError, match=r"Cannot prune layer 'out'.*output layer"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[NeuronPruning(layers=["out"])])
    dense = keras.Sequential([keras.Input((30,)), keras.layers.Dense(3)])
    dense.compile("sgd", "mse")
    for callback in (SETEvolution(), NeuronPruning()):
        with pytest.raises(ValueError, match="at least one SparseDense"):
            dense.fit(x, np.zeros((96, 3)), epochs=1, verbose=0, callbacks=[callback])


def test_dense_layer_after_sparse_blocks_pruning(rng):
    model = keras.Sequential(
        [
            keras.Input((30,)),
            SparseDense(20, name="h1"),
            keras.layers.Dense(10, name="d"),
            SparseDense(3, name="out"),
        ]
    )
    compiled(model)
    x, y = data(rng)
    with pytest.raises(ValueError, match=r"Cannot prune layer 'h1'.*'d' \(Dense\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[NeuronPruning(layers=["h1"])])
    # Without explicit layers, nothing is prunable but SET still works; the
    # skipped layer is named, with the reason, once (not for the output layer).
    callback = NeuronPruning(alpha=0.5, start=0, epochs=0)
    with pytest.warns(UserWarning, match=r"does not prune SparseDense layer 'h1'.*'d' \(Dense\)"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callback, SETEvolution()])
    assert model.get_layer("h1").units == 20


def test_skipped_layer_warning_once_per_layer_and_never_for_output_layers(rng):
    inputs = keras.Input((30,))
    h = SparseDense(20, activation="relu", seed=0, name="h1")(inputs)
    h = SparseDense(16, activation="relu", seed=1, name="h2")(h)
    a = keras.layers.Dense(8, name="a")(h)
    b = keras.layers.Dense(8, name="b")(h)
    h = SparseDense(8, activation="relu", seed=2, name="h3")(keras.layers.Add()([a, b]))
    outputs = SparseDense(3, activation="softmax", seed=3, name="out")(h)
    model = compiled(keras.Model(inputs, outputs))
    x, y = data(rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x, y, epochs=3, verbose=0, callbacks=[NeuronPruning(alpha=0.25, start=0, epochs=2)]
        )
    messages = [str(w.message) for w in caught if "does not prune" in str(w.message)]
    assert len(messages) == 1, messages
    assert "'h2'" in messages[0] and "several layers" in messages[0]
    assert model.get_layer("h1").units < 20  # pruned, silently
    # Naming the layers is the explicit choice: no warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[NeuronPruning(layers=["h1"], start=0)])
    assert not [w for w in caught if "does not prune" in str(w.message)]


def event_records(log_dir):
    """`{(run, tag, step): value}` of every scalar and histogram of a log directory.

    A scalar is its float; a histogram is the tuple of its bucket edges and counts.
    """
    records = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        run = os.path.relpath(os.path.dirname(path), log_dir)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if not value.HasField("tensor"):
                    continue
                array = tf.make_ndarray(value.tensor)
                data = float(array) if array.ndim == 0 else tuple(array.reshape(-1).tolist())
                records[(run, value.tag, event.step)] = data
    return records


def test_tensorboard_writes_what_keras_writes(rng, tmp_path):
    """The compiled epoch scalars and weight histograms equal Keras's eager ones."""
    x, y = data(rng)
    model = compiled(mlp(hidden=(40,)))
    keras_dir, our_dir = tmp_path / "keras", tmp_path / "ours"
    callbacks = [
        SETEvolution(seed=0),
        keras.callbacks.TensorBoard(str(keras_dir), histogram_freq=1, write_graph=False),
        TensorBoard(str(our_dir), histogram_freq=1, write_graph=False),
    ]
    model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=callbacks)
    theirs, ours = event_records(keras_dir), event_records(our_dir)
    # Keras also logs the int32 index storage; ours leaves it out (see above).
    theirs = {key: value for key, value in theirs.items() if "/indices/" not in key[1]}
    scalars = [key for key in ours if key[1] == "epoch_loss"]
    assert {key[0] for key in scalars} == {"train", "validation"}
    assert sorted(key[2] for key in scalars if key[0] == "train") == [0, 1, 2]
    assert set(ours) == set(theirs)
    # Live values only differ from Keras's where a layer pads: this model never does.
    assert ours == theirs


def test_tensorboard_skips_idle_batch_hooks(rng, tmp_path, monkeypatch):
    """With epoch summaries only, no summary op runs per batch."""
    x, y = data(rng)
    model = compiled(mlp(hidden=(40,)))
    board = TensorBoard(str(tmp_path), write_graph=False)
    calls = []
    scalar = board.summary.scalar

    def spy(name, *args, **kwargs):
        calls.append(name)
        return scalar(name, *args, **kwargs)

    monkeypatch.setattr(board.summary, "scalar", spy)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[board])
    # Keras's hook would call it for every batch ("batch_loss", ...), writing nowhere.
    assert not [name for name in calls if name.startswith("batch_")], calls
    assert "epoch_loss" in event_tags(tmp_path)
