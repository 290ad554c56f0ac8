"""One training run of the paper's experiments, from a `Config` to files on disk.

`run(cfg)` seeds everything, loads and splits the data, builds and trains the
model of `cfg.model.method` with the original SET optimiser (SGD with momentum;
a weight decay, off by default as in the paper, is applied per step and not
scaled by the learning rate, as in the SET code), and writes into
`cfg.output.dir`:

- `config.json`: the resolved config, library versions and seed (written first);
- `tensorboard/`: runs `train` (loss, accuracy and the neurons/params/density
  values the topology callbacks put into the logs), `test` (loss and accuracy on
  the test split, as the paper reports test accuracy per epoch) and `topology`
  (degree histograms every `models.TOPOLOGY_HISTOGRAM_FREQ` epochs);
- `results.json`: accuracies (percent), final widths, parameter and neuron counts
  as Table 3 (no biases; neurons = input + hidden), epoch times, per-epoch history;
- `model.keras`: the final model;
- `features.json` (sparse methods): every input feature ranked by the strength of
  its connections in the first sparse layer, most important first
  (`features_report`; 0-based columns of the data file);
- `split.json`: the data file's rows (0-based) in the training and the test split;
- `checkpoint/`: with `run(..., resume=True)` only, the training state after the
  last completed epoch (`keras_npset.checkpoint`), removed once `results.json`
  is written.

Every file except the TensorBoard event streams is written atomically (a temporary
file in the same folder, then `os.replace`).
"""

# ruff: noqa: E402  (TensorFlow is imported quietly before the imports below)
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from keras_npset.experiments.quiet import import_tensorflow_quietly

# Before keras: every app process that trains comes through here, and starts
# without TensorFlow's start-up chatter on stderr (keras_npset.experiments.quiet).
import_tensorflow_quietly()

import keras
import numpy as np

from keras_npset import checkpoint, graph
from keras_npset.callbacks import TensorBoard
from keras_npset.experiments import data as data_lib
from keras_npset.experiments import data_order, models, run_dir
from keras_npset.experiments.config import Config, config_to_dict
from keras_npset.features import feature_importance, find_selection, rank

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def _atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; on success it replaces `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with _atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON, atomically."""
    with _atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serializable: {type(value).__name__}")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import scipy
    import tensorflow as tf

    import keras_npset

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_npset": getattr(keras_npset, "__version__", "unknown"),
    }


class RunHistory(keras.callbacks.Callback):
    """Per-epoch logs and wall-clock seconds of a run, kept across a resume.

    Unlike Keras's `History`, its state (`get_state` / `set_state`) is saved in
    the run's checkpoint, so a resumed run reports every epoch, not only those
    trained after the resume. Put it after the topology callbacks, whose
    `neurons/...` and `params/...` values it records from the logs.
    """

    def __init__(self):
        super().__init__()
        self.logs: dict[str, list[float]] = {}
        self.seconds: list[float] = []
        self.elapsed_before = 0.0  # seconds of earlier sessions of a resumed run
        self.resumed_at: list[int] = []  # epochs at which the run was resumed
        self._resume = False
        self._session_start = time.perf_counter()

    def on_train_begin(self, logs=None):
        if not self._resume:
            self.logs, self.seconds, self.elapsed_before, self.resumed_at = {}, [], 0.0, []
        self._resume = False
        self._session_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        for key, value in (logs or {}).items():
            try:
                self.logs.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue

    def elapsed(self) -> float:
        """Seconds of training so far, over all sessions."""
        return self.elapsed_before + time.perf_counter() - self._session_start

    def get_state(self) -> dict:
        return {
            "logs": self.logs,
            "seconds": self.seconds,
            "elapsed": self.elapsed(),
            "resumed_at": self.resumed_at,
        }

    def set_state(self, state: dict) -> None:
        if not isinstance(state, dict) or not {"logs", "seconds", "elapsed"} <= set(state):
            raise ValueError(
                f"Expected `state` to be a dict from `get_state()`. Received: state={state!r}"
            )
        self.logs = {k: [float(v) for v in vs] for k, vs in state["logs"].items()}
        self.seconds = [float(s) for s in state["seconds"]]
        self.elapsed_before = float(state["elapsed"])
        self.resumed_at = [int(e) for e in state.get("resumed_at", [])]
        self._session_start = time.perf_counter()
        self._resume = True


class EpochLine(keras.callbacks.Callback):
    """`train.verbose = 2`: one short line per epoch, and one per pruning event.

    Keras's own per-epoch line prints every logged value as a float (`neurons/total:
    484.0000`) and calls the test split `val_`; this line says what a run reports:

        epoch  12/100  loss 0.0549  train 93.50%  test 91.50%  neurons 470  params 6,492  0.91s

    Before the line of an epoch that began with a pruning event it prints the widths
    that changed and the parameters before and after. Put it after the topology
    callbacks, whose values it reads from the logs.
    """

    def __init__(self, epochs: int, log: Callable[[str], None] = print):
        super().__init__()
        self.epochs, self.log = int(epochs), log
        self._widths: dict[str, int] = {}
        self._params: int | None = None

    def on_train_begin(self, logs=None):
        from keras_npset.layers import SparseDense

        self._widths = {
            f"neurons/{layer.name}": int(layer.units)
            for layer in self.model.layers
            if isinstance(layer, SparseDense)
        }
        self._params = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._start
        changed = {
            key[len("neurons/") :]: (before, int(logs[key]))
            for key, before in self._widths.items()
            if key in logs and int(logs[key]) != before
        }
        params = int(logs["params/total"]) if "params/total" in logs else None
        if changed:
            widths = ", ".join(f"{name} {a} -> {b}" for name, (a, b) in changed.items())
            before = f"{self._params:,} -> " if self._params is not None else ""
            after = f"{params:,}" if params is not None else "?"
            self.log(f"pruning event at epoch {epoch + 1}: {widths}; params {before}{after}")
        self._widths.update({key: int(logs[key]) for key in self._widths if key in logs})
        self._params = params
        digits = len(str(self.epochs))
        parts = [f"epoch {epoch + 1:>{digits}}/{self.epochs}"]
        if "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4f}")
        for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
            if key in logs:
                parts.append(f"{label} {100 * float(logs[key]):.2f}%")
        if "neurons/total" in logs:
            parts.append(f"neurons {int(logs['neurons/total']):,}")
        if params is not None:
            parts.append(f"params {params:,}")
        parts.append(f"{seconds:.2f}s")
        self.log("  ".join(parts))


class TestSetMetrics(keras.callbacks.Callback):
    """Adds `val_loss` and `val_accuracy` on the test split to each epoch's logs.

    What `fit(validation_data=...)` reports, for a fraction of its cost:
    Keras's validation builds a callback list, an iterator and a metrics pass
    every epoch, tens of milliseconds, as long as a whole epoch of a small
    network. Here one `predict_on_batch` (the model's predict function, which
    neuron pruning rebuilds with the others) and the compiled loss on the
    predictions. Put it first among the callbacks: like Keras's validation,
    it must see the model before `SETEvolution` rewires it.
    """

    def __init__(self, x, y, loss):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.loss = keras.losses.get(loss)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        predictions = keras.ops.convert_to_numpy(self.model.predict_on_batch(self.x))
        loss = keras.ops.convert_to_numpy(keras.ops.mean(self.loss(self.y, predictions)))
        hits = np.argmax(predictions, axis=-1) == np.argmax(self.y, axis=-1)
        # In float32, as Keras's metric computes it.
        logs["val_accuracy"] = float(np.float32(hits.sum()) / np.float32(hits.size))
        logs["val_loss"] = float(loss)


def model_summary(model: keras.Model, n_hidden: int) -> dict[str, Any]:
    """Final hidden widths, parameters and neurons (input + hidden), counted as Table 3.

    Parameters are `keras_npset.graph.kernel_params` of the hidden and output layers.
    """
    names = models.hidden_names(n_hidden)
    widths = [int(model.get_layer(n).units) for n in names]
    layers = [model.get_layer(n) for n in names + [models.OUTPUT_NAME]]
    selection = find_selection(model)  # input pruning: only the kept features are neurons
    n_features = selection.n_kept if selection is not None else int(model.inputs[0].shape[-1])
    params = {layer.name: graph.kernel_params(layer) for layer in layers}
    return {
        "hidden_units": widths,
        "params": sum(params.values()),
        "params_per_layer": params,
        "neurons": n_features + sum(widths),
    }


def make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
    """SGD with momentum and the per-step weight decay of `train.weight_decay` (see TrainConfig)."""
    t = cfg.train
    decay = t.keras_weight_decay()
    return keras.optimizers.SGD(
        learning_rate=t.learning_rate, momentum=t.momentum, weight_decay=decay or None
    )


def make_loss(name: str):
    """The Keras loss of `train.loss`: the paper's `SETSquaredError` or a Keras loss name."""
    if name == "set_squared_error":
        from keras_npset.losses import SETSquaredError

        return SETSquaredError()
    return name


# features.json's one-line definition of each `feature_importance` criterion.
FEATURE_CRITERION_DEFINITIONS = {
    "path": "path: sum over every path from the input neuron through the chain of SparseDense "
    "layers to the last one's units of the product of the paths' |weight| "
    "(|W1| @ |W2| @ ... @ 1); ties broken by lower index",
    "strength": "strength: sum of |weight| over the input neuron's connections in the first "
    "SparseDense layer (QuickSelection); ties broken by lower index",
    "degree": "degree: number of connections of the input neuron in the first "
    "SparseDense layer; ties broken by lower index",
}


def features_report(model, criterion="path") -> dict:
    """`features.json`'s content: every feature ranked, most important first.

    Scores and order are `keras_npset.features.feature_importance` and `rank`.
    """
    scores = feature_importance(model, criterion)
    selection = find_selection(model)
    kept = None if selection is None else selection.kept_indices()
    order = rank(scores, kept)
    report = {
        "criterion": criterion,
        "definition": FEATURE_CRITERION_DEFINITIONS[criterion],
        "n_features": int(scores.size),
        "ranking": [int(i) for i in order],
        "scores": [float(scores[i]) for i in order],
    }
    if kept is not None:
        report["kept"] = [int(i) for i in kept]
        report["n_kept"] = int(kept.size)
    return report


def _percent(values: list[float]) -> list[float]:
    return [round(100.0 * float(v), 4) for v in values]


def _write_config(cfg: Config, dataset: data_lib.Dataset, widths: list[int], started: float):
    write_json(
        os.path.join(cfg.output.dir, "config.json"),
        {
            "config": config_to_dict(cfg),
            "seed": cfg.train.seed,
            "method": cfg.model.method,
            "built_hidden": widths,
            "dataset": run_dir.dataset_info(dataset),
            "versions": library_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        },
    )


def _write_split(cfg: Config, dataset: data_lib.Dataset) -> None:
    """`split.json`: which rows of the data were the training and the test samples."""
    if dataset.train_index is None or dataset.test_index is None:
        return  # a caller-built Dataset: the split is the caller's
    write_json(
        os.path.join(cfg.output.dir, "split.json"),
        {
            "data": cfg.data.path or "synthetic",
            "seed": cfg.train.seed,
            "index_base": 0,
            "train": dataset.train_index,
            "test": dataset.test_index,
        },
    )


def compiled_model(cfg: Config, dataset: data_lib.Dataset, widths: list[int]) -> keras.Model:
    """The model a run trains, compiled as the run compiles it (optimizer, loss, execution)."""
    model = models.build_model(
        cfg.model.method,
        dataset.n_features,
        dataset.n_classes,
        widths,
        epsilon=cfg.model.epsilon,
        seed=cfg.train.seed,
        loss=cfg.train.loss,
        kernel_impl=cfg.model.kernel_impl,
        kernel_initializer=cfg.model.kernel_initializer,
        dense_initializer=cfg.model.dense_initializer,
        feature_selection=cfg.model.input_k > 0,
    )
    steps = math.ceil(len(dataset.y_train) / cfg.train.batch_size)
    model.compile(
        optimizer=make_optimizer(cfg),
        loss=make_loss(cfg.train.loss),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=data_order.execution_steps(cfg.train.steps_per_execution, steps),
        jit_compile=True if cfg.train.jit_compile else "auto",
    )
    return model


def run(
    cfg: Config,
    dataset: data_lib.Dataset | None = None,
    extra_callbacks: list | None = None,
    log: Callable[[str], None] | None = print,
    resume: bool = False,
) -> dict[str, Any]:
    """Trains `cfg.model.method` as configured and writes the run folder.

    Epoch `e` visits the training samples in an order that depends only on
    the seed and `e` (see `keras_npset.experiments.data_order`), so a resumed run
    sees the same batches as an uninterrupted one.

    Args:
        cfg: a validated `Config` (see `load_config`).
        dataset: an already loaded dataset; if `None`, loads `cfg.data.path` (or
            synthetic data when it is empty). Defaults to `None`.
        extra_callbacks: more Keras callbacks, run before TensorBoard.
            Defaults to `None`.
        log: called with one-line progress messages; `None` for silence.
            Defaults to `print`.
        resume: if True, saves the complete training state into
            `cfg.output.dir/checkpoint` after every epoch and, when a checkpoint
            is already there, continues from it (same topology, optimizer state,
            random streams and per-epoch history as if never interrupted); the
            checkpoint is deleted once `results.json` is written. The caller
            must make sure the folder holds a run of the same config and that no
            other process writes to it (`train.py` does both, see
            `keras_npset.experiments.run_dir`). Defaults to `False`.

    Returns:
        The results dict written to `results.json`.

    Raises:
        ValueError: for invalid data (see `keras_npset.experiments.data.load_mat`).
    """
    started = time.time()
    keras.utils.set_random_seed(cfg.train.seed)
    if dataset is None:
        dataset = data_lib.load_from_config(cfg.data, cfg.train.seed)
    widths = models.widths_for(cfg.model.method, cfg)
    os.makedirs(cfg.output.dir, exist_ok=True)
    recorder = RunHistory()
    topology = models.callbacks_for(cfg.model.method, cfg, log_dir=_tensorboard_dir(cfg))
    model, initial_epoch = _new_or_resumed_model(
        cfg, dataset, widths, topology, recorder, started, resume, log
    )
    callbacks = _callbacks(cfg, dataset, topology, recorder, extra_callbacks, resume, log)
    _fit(cfg, dataset, model, callbacks, initial_epoch)
    results = _results(cfg, dataset, model, recorder, len(widths))
    _write_results(cfg, model, results, resume)
    if log:
        log(
            f"max test accuracy {results['max_test_accuracy']:.2f}%, final "
            f"{results['final_test_accuracy']:.2f}%, hidden {results['hidden_units']}, "
            f"params {results['params']}, {results['total_seconds']:.1f}s"
        )
    return results


def _tensorboard_dir(cfg: Config) -> str | None:
    return os.path.join(cfg.output.dir, "tensorboard") if cfg.output.tensorboard else None


def _checkpoint_dir(cfg: Config) -> str:
    return os.path.join(cfg.output.dir, run_dir.CHECKPOINT_SUBDIR)


def _new_or_resumed_model(
    cfg: Config,
    dataset: data_lib.Dataset,
    widths: list[int],
    topology: list,
    recorder: RunHistory,
    started: float,
    resume: bool,
    log: Callable[[str], None] | None,
) -> tuple[keras.Model, int]:
    """The model and the epoch to start at: from the checkpoint, or built anew.

    A new run first writes `config.json` and `split.json`. Resuming restores the
    state of the topology callbacks and of `recorder` too.
    """
    method, out = cfg.model.method, cfg.output.dir
    ckpt_dir = _checkpoint_dir(cfg)
    if resume and checkpoint.has_training_state(ckpt_dir):
        model, initial_epoch = checkpoint.restore_training_state(ckpt_dir, [*topology, recorder])
        recorder.resumed_at.append(initial_epoch)
        if log:
            log(f"resuming {method} on {dataset.name} at epoch {initial_epoch} -> {out}")
        return model, initial_epoch
    _write_config(cfg, dataset, widths, started)
    _write_split(cfg, dataset)
    model = compiled_model(cfg, dataset, widths)
    if log:
        log(
            f"{method} on {dataset.name}: {dataset.n_features} features, "
            f"{dataset.n_classes} classes, {len(dataset.y_train)}/{len(dataset.y_test)} "
            f"train/test, hidden {widths}, {cfg.train.epochs} epochs -> {out}"
        )
    return model, 0


def _callbacks(
    cfg: Config,
    dataset: data_lib.Dataset,
    topology: list,
    recorder: RunHistory,
    extra_callbacks: list | None,
    resume: bool,
    log: Callable[[str], None] | None,
) -> list:
    """The callbacks of `fit`, in the order they must run.

    The test-set metrics see the model before SET rewires it; the recorder and the
    epoch line read what the topology callbacks log; the checkpoint saves the state
    of the epoch that just ended; TensorBoard comes last, to see every logged value.
    """
    y_test = keras.utils.to_categorical(dataset.y_test, dataset.n_classes)
    test_metrics = TestSetMetrics(dataset.x_test, y_test, make_loss(cfg.train.loss))
    callbacks = [test_metrics, *topology, *(extra_callbacks or []), recorder]
    if cfg.train.verbose == 2 and log:
        callbacks.append(EpochLine(cfg.train.epochs, log))
    if resume:
        # Written while the next epoch trains; `_fit` waits for the last write.
        callbacks.append(
            checkpoint.TrainingStateCheckpoint(
                _checkpoint_dir(cfg), [*topology, recorder], background=True
            )
        )
    tb_dir = _tensorboard_dir(cfg)
    if tb_dir:
        # The test split's figures go to a `test` run (the logs call them `val_`).
        callbacks.append(TensorBoard(log_dir=tb_dir, profile_batch=0, validation_name="test"))
    return callbacks


def _fit(
    cfg: Config,
    dataset: data_lib.Dataset,
    model: keras.Model,
    callbacks: list,
    initial_epoch: int,
) -> None:
    """Trains epochs `initial_epoch .. train.epochs - 1` in `data_order`'s batch order."""
    if initial_epoch >= cfg.train.epochs:  # killed after the last checkpoint
        return
    y_train = keras.utils.to_categorical(dataset.y_train, dataset.n_classes)
    batches, steps = data_order.epoch_batches(
        dataset.x_train,
        y_train,
        cfg.train.batch_size,
        cfg.train.seed,
        initial_epoch,
        cfg.train.epochs,
    )
    try:
        model.fit(
            batches,
            steps_per_epoch=steps,
            epochs=cfg.train.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the order is data_order's
            # 2 is EpochLine's short line instead of Keras's; 1 is Keras's progress bar.
            verbose=1 if cfg.train.verbose == 1 else 0,
        )
    finally:  # also when fit fails or is interrupted: the last epoch's checkpoint lands
        for callback in callbacks:
            if isinstance(callback, checkpoint.TrainingStateCheckpoint):
                callback.wait()


def _results(
    cfg: Config,
    dataset: data_lib.Dataset,
    model: keras.Model,
    recorder: RunHistory,
    n_hidden: int,
) -> dict[str, Any]:
    """`results.json`'s content: accuracies, Table 3's counts, times, the history."""
    history = recorder.logs
    test_acc = _percent(history["val_accuracy"])
    hidden = list(cfg.model.hidden)
    results: dict[str, Any] = {
        "method": cfg.model.method,
        "dataset": dataset.name,
        "seed": cfg.train.seed,
        "epochs": cfg.train.epochs,
        "max_test_accuracy": max(test_acc),
        "final_test_accuracy": test_acc[-1],
        "best_epoch": int(np.argmax(test_acc)),
        "test_accuracy": test_acc,
        "train_accuracy": _percent(history["accuracy"]),
        "initial_hidden_units": hidden,
        **model_summary(model, n_hidden),
        # The fully connected MLP of the configured widths (Table 3's FC-MLP).
        "dense_params": graph.dense_params([dataset.n_features, *hidden, dataset.n_classes]),
        "dense_neurons": dataset.n_features + sum(hidden),
        "epoch_seconds": [round(s, 4) for s in recorder.seconds],
        # What ran: the largest divisor of the steps per epoch up to the configured value.
        "steps_per_execution": int(model.steps_per_execution),
        "total_seconds": round(recorder.elapsed(), 2),
        "history": history,
    }
    if recorder.resumed_at:
        results["resumed_at_epochs"] = recorder.resumed_at
    results["compression"] = results["dense_params"] / max(results["params"], 1)
    if not all(math.isfinite(v) for v in history.get("loss", [0.0])):
        results["warning"] = "non-finite training loss"
    return results


def _write_results(cfg: Config, model: keras.Model, results: dict[str, Any], resume: bool):
    """Writes `model.keras`, `features.json` and, last, `results.json`; drops the checkpoint."""
    out = cfg.output.dir
    if cfg.output.save_model:
        with _atomic_path(os.path.join(out, "model.keras"), suffix=".keras") as tmp:
            model.save(tmp)
    if cfg.model.method in models.SPARSE_METHODS:
        write_json(
            os.path.join(out, "features.json"), features_report(model, cfg.model.feature_criterion)
        )
    write_json(os.path.join(out, "results.json"), results)
    if resume:
        shutil.rmtree(_checkpoint_dir(cfg), ignore_errors=True)
