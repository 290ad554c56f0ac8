"""Crash-safe checkpoints of a training run whose layer shapes change.

`keras.callbacks.BackupAndRestore` cannot resume a run with neuron pruning:
it saves weights only and loads them into the model as freshly built, whose
pruned layers are still at their initial widths, so loading fails with a
shape mismatch; it also does not restore the random generators of
`SETEvolution` / `NeuronPruning`, so even a SET-only run would not continue
the same way. This module saves everything a run needs to continue exactly:

- the model (architecture at its current widths, compile config, weights,
  and the optimizer's state: iteration count, momentum / Adam moments) as
  one uncompressed `.npz` file: the Keras config JSON and what each layer
  and optimizer writes with its own `save_own_variables` (as `model.save`
  has them write). `model.save` walks every attribute of every object and
  writes HDF5, tens of milliseconds for a small MLP, most of one of its
  epochs; this takes a few plus the `fsync`, and `TrainingStateCheckpoint(
  background=True)` (as `train.py` runs) leaves only the copying of the
  arrays in the epoch;
- the state of every Keras random seed generator in the model (Dropout and
  other random layers draw from them),
- the state of the topology callbacks (`get_state()`: their random
  generators, and `NeuronPruning.events`),
- the number of epochs completed.

Layout of a checkpoint directory: `checkpoint.json` (the commit point: it
names the model file and holds the rest of the state) and
`epoch-<n>.npz` (format 2; format 1 checkpoints, `epoch-<n>.keras`, still
load). Every file is written under a temporary name and moved
into place with `os.replace`, and `checkpoint.json` is replaced last, so a
crash at any moment leaves the previous complete checkpoint readable.

Usage:

```python
callbacks = [SETEvolution(seed=1), NeuronPruning(alpha=0.04, seed=2)]
if has_training_state("ckpt"):
    model, initial_epoch = restore_training_state("ckpt", callbacks)
else:
    model, initial_epoch = build_and_compile(), 0
model.fit(x, y, epochs=100, initial_epoch=initial_epoch, shuffle=False,
          callbacks=[*callbacks, TrainingStateCheckpoint("ckpt", callbacks)])
```

Exactness: with the same data order (`shuffle=False`, or a data pipeline
that is itself resumed) the continued run makes the same topology changes
(identical `indices`) and the same updates as an uninterrupted one, up to
float round-off. Under a `tf.distribute` strategy, call
`restore_training_state` inside `strategy.scope()`.
"""

from __future__ import annotations

import json
import os
import threading

import keras
import numpy as np

from keras_npset import _keras
from keras_npset.saving import register_classes
from keras_npset.validation import check_dir, check_int

FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_STATE_FILE = "checkpoint.json"
_CONFIG_KEY = "__config__"
_SEPARATOR = "::"


def _saveables(model) -> list:
    """What holds a model's state, in an order that a model loaded from its config repeats.

    Every layer (nested ones included) and the optimizer chain (a
    `LossScaleOptimizer` and the optimizer inside it).
    """
    found = _keras.all_layers(model)
    optimizer = model.optimizer
    while optimizer is not None:
        found.append(optimizer)
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return found


def _model_arrays(model, copy: bool = False) -> dict[str, np.ndarray]:
    """`model`'s config, weights and optimizer state as the arrays of its `.npz` file.

    Each layer and optimizer writes its own variables (`save_own_variables`,
    as for `model.save`: a padded SparseDense layer writes its live part),
    keyed by its position in `_saveables` and its own key. With `copy`, the
    arrays are copies, for a write that training goes on beside.
    """
    config_json = _keras.model_to_json(model)
    arrays = {_CONFIG_KEY: np.frombuffer(config_json.encode(), np.uint8)}
    for i, saveable in enumerate(_saveables(model)):
        store = {}
        saveable.save_own_variables(store)
        for key, value in store.items():
            arrays[f"{i}{_SEPARATOR}{key}"] = np.array(value) if copy else np.asarray(value)
    return arrays


def _write_arrays(arrays: dict[str, np.ndarray], path: str) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def _read_model(path: str, custom_objects=None):
    """The compiled model written by `_write_model`, with its optimizer state."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    config_json = arrays.pop(_CONFIG_KEY).tobytes().decode()
    model = _keras.model_from_json(config_json, custom_objects)
    stores = {}
    for name, value in arrays.items():
        index, _, key = name.partition(_SEPARATOR)
        stores.setdefault(int(index), {})[key] = value
    saveables = _saveables(model)
    for i, saveable in enumerate(saveables):
        store = stores.pop(i, {})
        if isinstance(saveable, keras.optimizers.Optimizer):
            if not saveable.built and store:
                saveable.build(model.trainable_variables)
            if len(store) != len(saveable.variables):
                # Keras's own loader would only warn and skip.
                raise ValueError(
                    f"Expected {len(saveable.variables)} optimizer variables in the "
                    f"checkpoint. Received: {len(store)} in {path!r}"
                )
        saveable.load_own_variables(store)
    if stores:
        raise ValueError(
            f"Expected the checkpoint to match the model's {len(saveables)} layers and "
            f"optimizers. Received: state for {len(saveables) + len(stores)} in {path!r}"
        )
    return model


def _check_path(path):
    return check_dir("path", path)


def _stateful(callbacks, name="callbacks"):
    if callbacks is None:
        return []
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, list | tuple) or not all(
        isinstance(c, keras.callbacks.Callback) for c in callbacks
    ):
        raise ValueError(
            f"Expected `{name}` to be a list of keras callbacks. Received: {name}={callbacks!r}"
        )
    return [c for c in callbacks if hasattr(c, "get_state") and hasattr(c, "set_state")]


def _seed_generators(model) -> dict:
    # Keyed by position and name: a loaded model has the same layers in the
    # same order, and the same names.
    found = {}
    for i, layer in enumerate(_keras.all_layers(model)):
        for j, generator in enumerate(_keras.seed_generators(layer)):
            found[f"{i}:{layer.name}/{j}"] = generator
    return found


def has_training_state(path) -> bool:
    """Whether `path` holds a complete checkpoint written by `save_training_state`."""
    return os.path.isfile(os.path.join(_check_path(path), _STATE_FILE))


def save_training_state(model, callbacks, path, epoch) -> None:
    """Save everything needed to continue training `model` exactly.

    Call it at the end of an epoch, after the topology callbacks have run
    (SET rewires in `on_epoch_end`); `TrainingStateCheckpoint` does this
    from within `fit`. The write is atomic: readers see either the previous
    checkpoint or this one, never a mixture.

    Args:
        model: The compiled model being trained.
        callbacks: The callbacks of the run; those with `get_state()` /
            `set_state()` (`SETEvolution`, `NeuronPruning`) are saved, in
            order. Others are ignored. `None` for none.
        path: Checkpoint directory; created if missing.
        epoch: Number of epochs completed, i.e. the `initial_epoch` of the
            `fit` that continues the run.
    """
    path = _check_path(path)
    _commit(path, _snapshot(model, callbacks, epoch))


def _snapshot(model, callbacks, epoch, copy: bool = False) -> dict:
    """Everything `save_training_state` writes, taken now, as arrays and JSON text.

    `copy`: copy the arrays (see `_model_arrays`).
    """
    stateful = _stateful(callbacks)
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected `model` to be a keras.Model. Received: model={model!r}")
    epoch = check_int("epoch", epoch, 0)
    model_file = f"epoch-{int(epoch):06d}.npz"
    state = {
        "format": FORMAT_VERSION,
        "epoch": int(epoch),
        "model": model_file,
        "seed_generators": {
            key: np.asarray(g.state.value).tolist() for key, g in _seed_generators(model).items()
        },
        "callbacks": [{"class": type(c).__name__, "state": c.get_state()} for c in stateful],
    }
    arrays = _model_arrays(model, copy)
    return {"model_file": model_file, "arrays": arrays, "state": json.dumps(state)}


def _commit(path: str, snapshot: dict) -> None:
    """Writes a `_snapshot` into `path`: the model file, then the commit point."""
    os.makedirs(path, exist_ok=True)
    model_file = snapshot["model_file"]
    tmp_model = os.path.join(path, f"tmp-{os.getpid()}-{model_file}")
    try:
        _write_arrays(snapshot["arrays"], tmp_model)
        os.replace(tmp_model, os.path.join(path, model_file))
    finally:
        if os.path.exists(tmp_model):
            os.remove(tmp_model)
    tmp_state = os.path.join(path, f"tmp-{os.getpid()}-{_STATE_FILE}")
    with open(tmp_state, "w") as f:
        f.write(snapshot["state"])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_state, os.path.join(path, _STATE_FILE))
    # The commit point has moved on: older model files are garbage now.
    for name in os.listdir(path):
        if (
            name.endswith((".keras", ".npz"))
            and name != model_file
            and (name.startswith("epoch-") or name.startswith(f"tmp-{os.getpid()}-"))
        ):
            os.remove(os.path.join(path, name))


def restore_training_state(path, callbacks=None, custom_objects=None):
    """Load the model saved by `save_training_state` and restore the callbacks.

    The model comes back compiled, at the widths it had when saved, with
    its optimizer state. The given callbacks (fresh instances configured as
    in the interrupted run) get their saved state: their next `fit`
    continues the saved random streams and pruning history.

    Args:
        path: Checkpoint directory.
        callbacks: The new run's callbacks; those with state must match the
            saved ones in class and order. `None` for none.
        custom_objects: Passed to `keras.models.load_model`.

    Returns:
        `(model, epoch)`: pass `epoch` as `initial_epoch` to `fit`.
    """
    path = _check_path(path)
    stateful = _stateful(callbacks)
    state_file = os.path.join(path, _STATE_FILE)
    if not os.path.isfile(state_file):
        raise ValueError(
            f"Expected `path` to hold a checkpoint ({_STATE_FILE} not found). "
            f"Received: path={path!r}"
        )
    with open(state_file) as f:
        state = json.load(f)
    if state.get("format") not in _READABLE_FORMATS:
        raise ValueError(
            f"Unsupported checkpoint format {state.get('format')!r} (expected one of "
            f"{_READABLE_FORMATS}). Received: path={path!r}"
        )
    model_file = state.get("model")
    if not isinstance(model_file, str) or os.path.basename(model_file) != model_file:
        raise ValueError(
            f"Expected the checkpoint to name a model file inside `path`. "
            f"Received: model={model_file!r} in {state_file!r}"
        )
    saved = state["callbacks"]
    names = [type(c).__name__ for c in stateful]
    if names != [entry["class"] for entry in saved]:
        raise ValueError(
            "Expected `callbacks` to contain the stateful callbacks of the saved run, in "
            f"order: {[entry['class'] for entry in saved]}. Received: callbacks={names}"
        )
    register_classes()  # the saved model may hold any of them (a SETSquaredError loss)
    # safe_mode=True explicitly: a checkpoint folder may come from elsewhere,
    # and a saved config must never run code (Lambda layers) on loading.
    if state["format"] == 1:
        model = keras.models.load_model(
            os.path.join(path, model_file), custom_objects=custom_objects, safe_mode=True
        )
    else:
        model = _read_model(os.path.join(path, model_file), custom_objects)
    generators = _seed_generators(model)
    for key, value in state["seed_generators"].items():
        if key in generators:
            generators[key].state.assign(np.asarray(value, generators[key].state.dtype))
    for callback, entry in zip(stateful, saved, strict=True):
        callback.set_state(entry["state"])
    return model, int(state["epoch"])


class TrainingStateCheckpoint(keras.callbacks.Callback):
    """Saves the training state with `save_training_state` every epoch.

    Put it *after* the topology callbacks in the `fit` callbacks list, so the
    saved state includes the SET step of the epoch that just ended. Resume
    with `restore_training_state` (see the module docstring).

    With `background=True` the state is still taken at the end of the epoch
    (copies of every array), but written to disk by a thread while the next
    epoch trains; the callback waits for one write before it starts the next,
    and for the last one when training ends. On a small model most of the
    checkpoint's cost is the file writing and `fsync`, which then leaves the
    epoch. The files are replaced atomically either way, so a crash always
    leaves a complete checkpoint, of the last epoch or the one before it. When
    `fit` raises, call `wait()` before reading the folder in the same process.

    Args:
        path: Checkpoint directory.
        callbacks: The run's topology callbacks whose state is saved (the
            same list passed to `restore_training_state` on resume).
        save_freq: Save every `save_freq` epochs (and after the last one).
            Defaults to `1`.
        background: Write each checkpoint from a background thread.
            Defaults to `False`.
    """

    def __init__(self, path, callbacks, save_freq=1, background=False):
        super().__init__()
        self.path = _check_path(path)
        self.callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else callbacks
        _stateful(self.callbacks)
        self.save_freq = check_int("save_freq", save_freq, 1)
        if not isinstance(background, bool):
            raise ValueError(
                f"Expected `background` to be a bool. Received: background={background!r}"
            )
        self.background = background
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def on_train_begin(self, logs=None):
        self.wait()

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.params.get("epochs", epoch + 2)
        if (epoch + 1) % self.save_freq and not last:
            return
        snapshot = _snapshot(self.model, self.callbacks, epoch + 1, copy=self.background)
        if not self.background:
            _commit(self.path, snapshot)
            return
        self.wait()
        self._writer = threading.Thread(
            target=self._write, args=(snapshot,), name="keras_npset-checkpoint"
        )
        self._writer.start()

    def on_train_end(self, logs=None):
        self.wait()

    def _write(self, snapshot: dict) -> None:
        try:
            _commit(self.path, snapshot)
        except BaseException as e:  # re-raised by wait(), in the training thread
            self._error = e

    def wait(self) -> None:
        """Blocks until the checkpoint being written in the background is on disk.

        Raises the error of that write, if it failed. Returns at once when
        nothing is being written.
        """
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self._error = self._error, None
        if error is not None:
            raise error
