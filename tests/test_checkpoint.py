"""Tests for keras_npset.checkpoint: exact resume of SET/NPSET runs after a crash."""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_npset import NeuronPruning, SETEvolution, SparseDense  # noqa: E402
from keras_npset import checkpoint as checkpoint_module  # noqa: E402
from keras_npset.checkpoint import (  # noqa: E402
    TrainingStateCheckpoint,
    has_training_state,
    restore_training_state,
    save_training_state,
)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 12)).astype("float32")
Y = RNG.integers(0, 3, 64)
EPOCHS = 5


class Crash(Exception):
    pass


class CrashAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Crash()


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            SparseDense(24, activation="relu", seed=1, name="h1"),
            keras.layers.Dropout(0.2, seed=7, name="drop"),
            keras.layers.BatchNormalization(name="bn"),
            SparseDense(16, activation="relu", seed=2, name="h2"),
            SparseDense(3, seed=3, name="out"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def _callbacks():
    # Seed None for pruning: its generator comes from NumPy's global state,
    # which only a restored state can reproduce.
    return [SETEvolution(zeta=0.3, seed=5), NeuronPruning(alpha=0.2, start=1, epochs=3)]


def _fit(model, callbacks, **kwargs):
    model.fit(
        X, Y, epochs=EPOCHS, batch_size=16, verbose=0, shuffle=False, callbacks=callbacks, **kwargs
    )


def _assert_same(a, b, a_events, b_events):
    assert a_events == b_events
    for la, lb in zip(a.layers, b.layers, strict=True):
        if isinstance(la, SparseDense):
            assert (la.input_dim, la.units) == (lb.input_dim, lb.units)
            np.testing.assert_array_equal(la.indices.numpy(), lb.indices.numpy())
        for wa, wb in zip(la.weights, lb.weights, strict=True):
            np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        a.predict(X, verbose=0), b.predict(X, verbose=0), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("crash_epoch", [2])
@pytest.mark.parametrize("background", [False, True])
def test_resume_after_crash_matches_uninterrupted_run(tmp_path, crash_epoch, background):
    reference, ref_callbacks = _model(), _callbacks()
    _fit(reference, ref_callbacks)

    path = str(tmp_path / "ckpt")
    model, callbacks = _model(), _callbacks()
    saver = TrainingStateCheckpoint(path, callbacks, background=background)
    with pytest.raises(Crash):
        _fit(model, [*callbacks, saver, CrashAfter(crash_epoch)])
    saver.wait()
    assert has_training_state(path)
    del model

    fresh = _callbacks()
    np.random.seed(123)  # the global state differs from the first run's
    restored, initial_epoch = restore_training_state(path, fresh)
    assert initial_epoch == crash_epoch + 1
    saver = TrainingStateCheckpoint(path, fresh, background=background)
    _fit(restored, [*fresh, saver], initial_epoch=initial_epoch)
    _assert_same(reference, restored, ref_callbacks[1].events, fresh[1].events)
    assert restored.get_layer("h1").units < 24  # pruning did happen
    # Only the last complete checkpoint is kept.
    assert sorted(os.listdir(path)) == ["checkpoint.json", f"epoch-{EPOCHS:06d}.npz"]


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt")
    model, callbacks = _model(), _callbacks()
    _fit(model, callbacks)
    save_training_state(model, callbacks, path, 3)
    state_file = tmp_path / "ckpt" / "checkpoint.json"
    before = state_file.read_text()

    def broken_write(arrays, filepath):
        with open(filepath, "wb") as f:
            f.write(b"partial")
        raise Crash()

    monkeypatch.setattr(checkpoint_module, "_write_arrays", broken_write)
    with pytest.raises(Crash):
        save_training_state(model, callbacks, path, 4)
    monkeypatch.undo()
    assert state_file.read_text() == before
    assert sorted(os.listdir(path)) == ["checkpoint.json", "epoch-000003.npz"]
    restored, epoch = restore_training_state(path, _callbacks())
    assert epoch == 3
    np.testing.assert_allclose(
        restored.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6
    )


def test_background_write_holds_the_state_of_its_epoch(tmp_path, monkeypatch):
    # The state is taken at the end of its epoch; the next epoch trains (and SET and
    # pruning rewire) while it is written.
    expected = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            expected[epoch + 1] = checkpoint_module._model_arrays(self.model, copy=True)

    written = {}
    commit = checkpoint_module._commit

    def slow_commit(path, snapshot):
        time.sleep(0.3)
        epoch = json.loads(snapshot["state"])["epoch"]
        written[epoch] = {k: v.copy() for k, v in snapshot["arrays"].items()}
        commit(path, snapshot)

    monkeypatch.setattr(checkpoint_module, "_commit", slow_commit)
    path = str(tmp_path / "ckpt")
    model, callbacks = _model(), _callbacks()
    saver = TrainingStateCheckpoint(path, callbacks, background=True)
    _fit(model, [*callbacks, Record(), saver])
    assert sorted(written) == list(range(1, EPOCHS + 1))
    assert saver._writer is None  # fit's end waited for the last write
    for epoch, arrays in written.items():
        assert arrays.keys() == expected[epoch].keys()
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, expected[epoch][key], err_msg=key)
    first, last = written[1], written[EPOCHS]
    assert not np.array_equal(first["__config__"], last["__config__"])  # pruned in between
    monkeypatch.undo()
    restored, epoch = restore_training_state(path, _callbacks())
    assert epoch == EPOCHS
    np.testing.assert_allclose(
        restored.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6
    )


def test_background_write_error_reaches_fit(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt")
    commit = checkpoint_module._commit

    def failing_commit(path, snapshot):
        if json.loads(snapshot["state"])["epoch"] == 2:
            raise OSError("disk full")
        commit(path, snapshot)

    monkeypatch.setattr(checkpoint_module, "_commit", failing_commit)
    model, callbacks = _model(), _callbacks()
    saver = TrainingStateCheckpoint(path, callbacks, background=True)
    with pytest.raises(OSError, match="disk full"):
        _fit(model, [*callbacks, saver])
    saver.wait()  # the error was raised once, and nothing is pending
    monkeypatch.undo()
    assert restore_training_state(path, _callbacks())[1] == 1
    with pytest.raises(ValueError, match="Received: background=1"):
        TrainingStateCheckpoint(path, [], background=1)


def test_callback_state_round_trip():
    a = NeuronPruning(alpha=0.1, seed=3)
    a._rng = np.random.default_rng(3)
    a._rng.random(5)
    a.events = [10, 11]
    b = NeuronPruning(alpha=0.1, seed=99)
    b.set_state(a.get_state())
    assert b.events == [10, 11]
    assert b._rng.random() == a._rng.random()


def test_rejects_bad_arguments(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match=r"Received: path="):
        restore_training_state(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"Received: path=None"):
        save_training_state(model, [], None, 0)
    with pytest.raises(ValueError, match=r"Received: epoch=-1"):
        save_training_state(model, [], str(tmp_path), -1)
    with pytest.raises(ValueError, match=r"Received: callbacks="):
        save_training_state(model, ["SETEvolution"], str(tmp_path), 0)
    with pytest.raises(ValueError, match=r"Received: save_freq=0"):
        TrainingStateCheckpoint(str(tmp_path), [], save_freq=0)
    with pytest.raises(ValueError, match=r"Received: state="):
        SETEvolution().set_state([1, 2])
    save_training_state(model, [SETEvolution(seed=1)], str(tmp_path), 0)
    with pytest.raises(ValueError, match=r"\['SETEvolution'\]. Received: callbacks=\[\]"):
        restore_training_state(str(tmp_path), [])


def test_crashed_fit_does_not_leave_stats_in_evaluate():
    # Keras skips on_train_end when fit raises; the log hook of the crashed
    # fit must not turn the topology stats into extra `evaluate` results.
    model = _model()
    with pytest.raises(Crash):
        _fit(model, [SETEvolution(seed=0), CrashAfter(0)])
    _fit(model, [SETEvolution(seed=0)])
    assert np.ndim(model.evaluate(X, Y, verbose=0)) == 0  # the loss alone
    assert "params/total" not in model.evaluate(X, Y, verbose=0, return_dict=True)
