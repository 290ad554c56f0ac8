"""Keras callbacks that evolve (SET) and narrow (NPSET) sparse models inside `fit`.

The callbacks only orchestrate: *what* changes comes from the pure functions
in `topology`, *how* live layers change from `surgery`.

Topology statistics (`params/<layer>`, `neurons/<layer>`, `density/<layer>`,
`params/total`, `neurons/total`, `compression`) are added to the epoch logs
where Keras assembles them, before any callback's `on_epoch_end` runs, so
`History`, `keras.callbacks.TensorBoard` and `CSVLogger` record them wherever
they stand in the callbacks list.

Distributed training: under `tf.distribute.MirroredStrategy` (one machine,
several devices) the callbacks work unchanged when the model is built and
compiled inside `strategy.scope()`. Callbacks run once, in the Python process;
the topology is computed from the (identical) replica copies and every
changed variable, and its optimizer slots, gets new mirrored storage created
under the strategy's scope, so all replicas hold the same topology; results
match single-device training up to the order of the gradient all-reduce
(tested on two logical CPUs, `tests/test_distributed.py`). BatchNormalization
normalises per replica there, as with any Keras model.
`MultiWorkerMirroredStrategy` is *not tested*: every worker runs the
callbacks itself, so topology changes agree only if every worker uses the
same explicit `seed` and sees bitwise-identical values (the all-reduce
should guarantee it, but SET's magnitude thresholds are sensitive to the
last bit), and replacing storage creates variables, a collective operation
that every worker must perform in the same order. Checkpoints
(`keras_npset.checkpoint`) must then be written by the chief worker only.
"""

from __future__ import annotations

import concurrent.futures
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_npset import _keras, graph, surgery
from keras_npset.choices import NEW_VALUE_INITS
from keras_npset.layers import SparseDense
from keras_npset.optimizer_state import save_live_slots
from keras_npset.schedules import PruningSchedule
from keras_npset.summaries import write_histograms
from keras_npset.topology import (
    CRITERIA,
    finish_set,
    neuron_degrees,
    neurons_to_remove,
    plan_set,
    sample_free_positions,
    select_neurons,
)
from keras_npset.validation import check_choice, check_dir, check_fraction, check_int, check_seed

_HOOK = "_keras_npset_topology_logging"
# Connections (all evolved layers together) from which `SETEvolution` runs its
# deterministic NumPy work on a second thread. `benchmarks/bench_evolution.py`
# measured 1.01x at 112k connections and 1.26x at 294k (Leukemia's MLP); below
# the crossover, hand-offs cost more than they save.
PARALLEL_EVOLUTION_MIN_NNZ = 200_000


class _Inline:
    """Stand-in for a thread pool that runs each call at once."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future


class _LogHook:
    """Adds topology stats to the epoch logs Keras builds inside `fit`.

    Installed on the model instance (`_keras.wrap_epoch_logs`) for the
    duration of `fit` by whichever topology callback starts first;
    validation (between `on_test_begin` and `on_test_end`) is left alone so
    no `val_params/...` keys appear.
    """

    def __init__(self, model):
        self.model = model
        self.owners = set()
        self.in_test = False
        self.params = None
        self._remove = None

    def _add_stats(self, logs):
        if self.in_test or not isinstance(logs, dict):
            return logs
        return {**logs, **graph.topology_stats(self.model)}

    @classmethod
    def acquire(cls, model, owner) -> _LogHook:
        hook = model.__dict__.get(_HOOK)
        # The callbacks of one `fit` share its `params` dict. A hook from
        # another fit was left behind by a fit that raised before
        # `on_train_end` (Keras does not call it then): drop it, or
        # `evaluate` would keep returning the stats as extra metrics.
        if hook is not None and hook.params is not owner.params:
            hook.uninstall()
            hook = None
        if hook is None:
            hook = cls(model)
            hook.params = owner.params
            model.__dict__[_HOOK] = hook
            hook._remove = _keras.wrap_epoch_logs(model, hook._add_stats)
        hook.owners.add(id(owner))
        return hook

    def uninstall(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        self.model.__dict__.pop(_HOOK, None)

    def release(self, owner) -> None:
        self.owners.discard(id(owner))
        if not self.owners:
            self.uninstall()


def _check_layers(layers):
    if layers is None:
        return None
    ok = isinstance(layers, list | tuple) and bool(layers)
    ok = ok and all(isinstance(n, str) and n for n in layers) and len(set(layers)) == len(layers)
    if not ok:
        raise ValueError(
            "Expected `layers` to be None or a non-empty list of distinct layer names. "
            f"Received: layers={layers!r}"
        )
    return list(layers)


def _is_built(model) -> bool:
    return model.built and all(layer.built for layer in model.layers)


class _TopologyCallback(keras.callbacks.Callback):
    """Shared plumbing: layer selection, seeded RNG, logging hook."""

    def __init__(self, layers=None, seed=None):
        super().__init__()
        self.layers = _check_layers(layers)
        self.seed = check_seed("seed", seed)
        self._rng = None
        self._hook = None
        self._resume = False

    def _all_sparse(self):
        found = graph.sparse_layers(self.model)
        if not found:
            raise ValueError(
                f"{type(self).__name__} needs a model with at least one SparseDense layer. "
                f"Received: a model with layers {[layer.name for layer in self.model.layers]}"
            )
        return found

    def _select(self, candidates):
        if self.layers is None:
            return candidates
        by_name = {layer.name: layer for layer in candidates}
        unknown = [name for name in self.layers if name not in by_name]
        if unknown:
            raise ValueError(
                f"Expected `layers` to name SparseDense layers of the model, among "
                f"{sorted(by_name)}. Received: layers={self.layers!r} (unknown: {unknown})"
            )
        return [by_name[name] for name in self.layers]

    def on_train_begin(self, logs=None):
        if self._resume:
            # `set_state` was called: continue its random stream instead of
            # reseeding, once (a later `fit` starts afresh again).
            self._resume = False
        else:
            seed = self.seed if self.seed is not None else np.random.randint(2**31 - 1)
            self._rng = np.random.default_rng(seed)
        self._hook = _LogHook.acquire(self.model, self)

    def get_state(self) -> dict:
        """JSON-serialisable state needed to continue training exactly.

        The state of the random generator (rewiring / tie-breaking draws);
        subclasses add their own. Used by `keras_npset.checkpoint`.
        """
        return {"rng": None if self._rng is None else self._rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        """Restore a `get_state` result; the next `fit` continues from it.

        The next `on_train_begin` keeps the restored generator instead of
        reseeding from `seed`.
        """
        if not isinstance(state, dict) or "rng" not in state:
            raise ValueError(
                f"Expected `state` to be a dict from `get_state()`. Received: state={state!r}"
            )
        if state["rng"] is None:
            self._rng, self._resume = None, False
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        self._rng, self._resume = rng, True

    def on_train_end(self, logs=None):
        if self._hook is not None:
            self._hook.release(self)
            self._hook = None

    def on_test_begin(self, logs=None):
        if self._hook is not None:
            self._hook.in_test = True

    def on_test_end(self, logs=None):
        if self._hook is not None:
            self._hook.in_test = False

    def on_epoch_end(self, epoch, logs=None):
        # Also for loops that call callbacks by hand (no fit-installed hook).
        if logs is not None:
            logs.update(graph.topology_stats(self.model))


class SETEvolution(_TopologyCallback):
    """Sparse Evolutionary Training (Mocanu et al. 2018) as a Keras callback.

    At the end of every epoch except the last, in every SparseDense layer of
    the model (or those named in `layers`): removes the fraction `zeta` of
    the smallest positive kernel values and the fraction `zeta` of the
    largest negative ones (and any exact zeros), then adds the same number of
    connections at positions drawn uniformly among the unoccupied ones, so
    nnz stays constant. Optimizer state (momentum, Adam moments, ...) moves
    with the surviving connections; new connections start from zero state.

    A fully dense layer (small output layers often are, see `epsilon`) has no
    unoccupied position to explore and is left unchanged. A nearly dense one
    regrows among its few free positions and the ones just freed.

    Args:
        zeta: Fraction of positive and of negative values replaced each
            epoch, in [0, 1). Defaults to `0.3`, as in the SET paper.
        init: Value of new connections: `"normal"` draws N(0, 1) / 10 as the
            original SET code; `"zeros"` starts them at zero (as RigL).
            Defaults to `"normal"`.
        seed: Integer seed of the rewiring; the same seed gives the same
            topology. Defaults to `None` (drawn from NumPy's global generator,
            which `keras.utils.set_random_seed` seeds).
        layers: Names of the SparseDense layers to evolve. Defaults to `None`
            (all of them).

    Example:

    ```python
    model.fit(x, y, epochs=20, callbacks=[SETEvolution(zeta=0.3, seed=1)])
    model.history.history["params/total"]
    ```
    """

    def __init__(self, zeta=0.3, init="normal", seed=None, layers=None):
        super().__init__(layers=layers, seed=seed)
        self.zeta = check_fraction("zeta", zeta)
        self.init = check_choice("init", init, NEW_VALUE_INITS)
        self._targets = []

    def on_train_begin(self, logs=None):
        self._targets = self._select(self._all_sparse())
        super().on_train_begin(logs)

    def evolve(self) -> None:
        """Run one SET step on every target layer now.

        Per layer: `topology.plan_set` (what to remove), the regrowth
        (positions and new values, drawn from the callback's generator in
        layer order), `topology.finish_set` (the merge), then the update of
        the layer and its optimizer slots. From `PARALLEL_EVOLUTION_MIN_NNZ`
        connections, planning the next layer and merging the current one run
        on a second thread while this one draws and updates; the draws keep
        their order, so the result is the same either way.
        """
        optimizer = self.model.optimizer
        strategy = self.model.distribute_strategy
        layers = list(self._targets)
        parallel = sum(layer.nnz for layer in layers) >= PARALLEL_EVOLUTION_MIN_NNZ
        pool = concurrent.futures.ThreadPoolExecutor(1) if parallel else _Inline()
        with pool:

            def plan(layer):
                shape = (layer.input_dim, layer.units)
                return pool.submit(
                    plan_set, layer.live_indices(), layer.live_values(), shape, self.zeta
                )

            upcoming = plan(layers[0]) if layers else None
            pending = None
            for i, layer in enumerate(layers):
                current = upcoming.result()
                upcoming = plan(layers[i + 1]) if i + 1 < len(layers) else None
                if current.n_new == 0:
                    continue
                n_in, n_out = current.shape
                new_keys = sample_free_positions(
                    current.kept_keys, n_in * n_out, current.n_new, self._rng
                )
                new_values = (
                    self._rng.standard_normal(current.n_new) / 10.0
                    if self.init == "normal"
                    else np.zeros(current.n_new)
                )
                merged = pool.submit(finish_set, current, new_keys)
                if pending is not None:
                    self._apply(*pending, optimizer, strategy)
                pending = (layer, merged, new_values.astype(np.float32))
            if pending is not None:
                self._apply(*pending, optimizer, strategy)

    @staticmethod
    def _apply(layer, merged, new_values, optimizer, strategy):
        surgery.rewire_layer(
            layer, merged.result(), new_values, optimizer=optimizer, strategy=strategy
        )

    def on_epoch_end(self, epoch, logs=None):
        last = epoch >= self.params.get("epochs", epoch + 2) - 1
        if not last and not self.model.stop_training:
            self.evolve()
        super().on_epoch_end(epoch, logs)

    def get_config(self):
        return {"zeta": self.zeta, "init": self.init, "seed": self.seed, "layers": self.layers}


class NeuronPruning(_TopologyCallback):
    """Neuron pruning of NPSET (Liu, Mocanu & Pechenizkiy 2019) as a Keras callback.

    At the beginning of every pruning epoch, removes `floor(alpha * n)` of
    the `n` neurons of each hidden SparseDense layer (a SparseDense layer
    whose outputs feed another SparseDense layer, possibly through Dropout,
    activations or normalisation layers; output layers are never pruned):
    those with the fewest connections. The layers physically shrink: the
    kernel columns and bias of the pruned layer, the per-unit weights of
    normalisation layers in between and the kernel rows of the next
    SparseDense layer are removed, and surviving optimizer state is carried.
    The smaller kernels are written into the layers' existing storage,
    padded, so that an event re-traces nothing; only when the pruned layers fill less
    than `surgery.MIN_FILL` of their storage, and after the last event of the
    run (or at the end of `fit`), does the storage shrink to the live size.
    The layers are made resizable at the start of `fit`
    (`SparseDense.set_resizable`), so that shrinking happens in place and
    re-traces nothing either; a layer that cannot be (no bias, more than
    `topology.TILE_COLS` units, normalisation in between) gets new storage
    and the train/test/predict functions are rebuilt (see
    `keras_npset.surgery`). Outside `fit` every layer is at its exact, live
    size.

    Schedule: pruning happens at the beginning of every epoch `e` with
    `start <= e <= start + epochs`, counting epochs from 0 as Keras does,
    i.e. `epochs + 1` events. The paper's settings (alpha 0.04, beta = 10,
    gamma = 40) are `NeuronPruning(alpha=0.04, start=10, epochs=40)`: 41
    events, at the beginning of epochs 10 to 50, which reproduces the neuron
    counts of the paper's Table 3 exactly (7000 -> 1320, 3000 -> 573,
    1000 -> 198, 300 -> 66 per layer).

    Args:
        alpha: Fraction of each pruned layer's current neurons removed per
            event, in [0, 1). Defaults to `0.04`.
        start: First pruning epoch (0-based; beta in the paper). Defaults to
            `10`.
        epochs: Number of pruning epochs after the first (gamma in the
            paper). Defaults to `40`.
        layers: Names of the hidden SparseDense layers to prune (e.g. only
            the first one, the paper's "1st NPSET"). Defaults to `None`
            (every hidden SparseDense layer; a SparseDense layer that feeds
            any other kind of layer, such as a plain `Dense`, is left
            unpruned with a warning that names it and why).
        criterion: Which connections count: `"out"` (connections to the
            next layer), `"total"` (in + out degree) or `"in"` (from the
            previous one). Defaults to `"out"`: the paper removes "the hidden
            layer neurons with very few output connections", and only this
            criterion reproduces its Table 3 parameter counts (within 2.2%
            on seven of the eight datasets measured, against +20% to +74%
            for the others; `benchmarks/paper_recipe.py`).
        min_units: Fewest neurons a layer keeps, >= 1. Defaults to `1`.
        seed: Integer seed for breaking ties between neurons of equal degree.
            Defaults to `None` (NumPy's global generator).

    Example:

    ```python
    model.fit(x, y, epochs=100, callbacks=[
        SETEvolution(zeta=0.3), NeuronPruning(alpha=0.04, start=10, epochs=40)])
    ```
    """

    def __init__(
        self,
        alpha=0.04,
        start=10,
        epochs=40,
        layers=None,
        criterion="out",
        min_units=1,
        seed=None,
    ):
        super().__init__(layers=layers, seed=seed)
        self.alpha = check_fraction("alpha", alpha)
        self.schedule = PruningSchedule(start=start, epochs=epochs)
        self.criterion = check_choice("criterion", criterion, CRITERIA)
        self.min_units = check_int("min_units", min_units, 1)
        self.events = []
        self._targets = []
        self._undo_slot_saving = None

    def on_train_begin(self, logs=None):
        self._all_sparse()
        # A model without an `Input` (e.g. a Sequential built from data) is
        # only built by its first training step, after this point; its
        # normalisation layers have no weights yet and would look like
        # blockers. Its pruning targets are then resolved at the first event.
        self._targets = self._resolve_targets() if _is_built(self.model) else None
        if not self._resume:
            self.events = []
        super().on_train_begin(logs)
        total = self.params.get("epochs") if self.params else None
        if (
            self.alpha > 0
            and self._targets is not None
            and total is not None
            and self.schedule.events(total)
            and self.schedule.last_event(total) not in self.events
        ):
            # Trace the kernels padding-aware from the start, so that the
            # first event need not re-trace either.
            self._prepare_padding()

    def _target_links(self) -> list:
        links = {link.layer.name: link for link in graph.links(self.model)}
        return [links[name] for name in self._targets]

    def _prepare_padding(self) -> None:
        """Make the paddable target layers `pad_ready` and resizable (re-tracing if any changed).

        Resizable storage (`SparseDense.set_resizable`) lets the final
        compaction shrink them without a re-trace.
        """
        changed = False
        optimizer, strategy = self.model.optimizer, self.model.distribute_strategy
        if optimizer is not None and not optimizer.built:
            # Keras builds it at the first training step; its slots must exist
            # now, to be made resizable with their variables.
            with strategy.scope():
                optimizer.build(self.model.trainable_variables)
        for link in self._target_links():
            if surgery.can_pad(link):
                for layer in (link.layer, link.next):
                    changed = layer.set_pad_ready(True) or changed
                    units = layer.name in self._targets
                    changed = layer.set_resizable(optimizer, strategy, units) or changed
        if self._undo_slot_saving is None:
            self._undo_slot_saving = save_live_slots(self.model.optimizer, self._live_length)
        if changed:
            surgery.refresh_model(self.model)

    def _live_length(self, variable):
        for layer in graph.sparse_layers(self.model):
            n = layer.live_length(variable)
            if n is not None:
                return n if layer.padded else None
        return None

    def _finish_padding(self) -> bool:
        """Return every target layer to its exact size (and plain kernels, unless resizable).

        Returns whether anything changed: the caller must then `refresh_model`
        (`_refresh`). A resizable layer keeps its padding-aware kernels
        (they are exact on exact storage), as a change of them would
        re-trace.
        """
        links = self._target_links()
        model = self.model
        changed = surgery.compact(links, model.optimizer, model.distribute_strategy)
        for link in links:
            for layer in (link.layer, link.next):
                if not layer.resizable:
                    changed = layer.set_pad_ready(False) or changed
        if self._undo_slot_saving is not None:
            self._undo_slot_saving()
            self._undo_slot_saving = None
        return changed

    def on_train_end(self, logs=None):
        # A run that stops before its last event (early stopping, a shorter
        # `fit`) leaves no padding behind.
        if self._targets and self._finish_padding():
            self._refresh()
        super().on_train_end(logs)

    def _resolve_targets(self) -> list[str]:
        if not _is_built(self.model):
            raise ValueError(
                "NeuronPruning cannot prune a model that is not built yet: a model without "
                "an `Input` is built by its first training step, after pruning at the "
                "beginning of epoch 0 would happen. Give the model a `keras.Input` or call "
                "`model.build(input_shape)` before `fit`, or start pruning later. "
                f"Received: start={self.schedule.start}"
            )
        all_links = {link.layer.name: link for link in graph.links(self.model)}
        if self.layers is not None:
            unknown = [name for name in self.layers if name not in all_links]
            if unknown:
                raise ValueError(
                    "Expected `layers` to name hidden SparseDense layers of the model, among "
                    f"{sorted(all_links)}. Received: layers={self.layers!r} (unknown: {unknown})"
                )
            for name in self.layers:
                if all_links[name].next is None:
                    raise ValueError(
                        f"Cannot prune layer {name!r}: {all_links[name].blocker}. "
                        f"Received: layers={self.layers!r}"
                    )
            names = self.layers
        else:
            names = [name for name, link in all_links.items() if link.next is not None]
            if self.alpha > 0:
                for name, link in all_links.items():
                    if link.next is None and link.blocker != graph.OUTPUT_LAYER:
                        warnings.warn(
                            f"NeuronPruning does not prune SparseDense layer {name!r}: "
                            f"{link.blocker}. Name the layers to prune with `layers=` to "
                            "silence this warning.",
                            UserWarning,
                            stacklevel=1,
                        )
        return names

    def prune(self, last: bool = False) -> dict[str, int]:
        """Run one pruning event now; returns the number removed per layer.

        Until `last`, the pruned layers keep their storage, padded, unless
        they fill less than `surgery.MIN_FILL` of it; the last event
        (`on_epoch_begin` passes it for the schedule's final event within the
        run) returns them to exact sizes and plain kernels, traced once for
        the rest of training.
        """
        if self._targets is None:
            self._targets = self._resolve_targets()
        model = self.model
        optimizer, strategy = model.optimizer, model.distribute_strategy
        self._prepare_padding()
        links = self._target_links()
        removed, resized = {}, False
        for link in links:
            layer = link.layer
            in_deg, out_deg = neuron_degrees(
                layer.live_indices(), link.next.live_indices(), layer.units
            )
            n_remove = neurons_to_remove(layer.units, self.alpha, self.min_units)
            keep = select_neurons(in_deg, out_deg, n_remove, self._rng, self.criterion)
            removed[layer.name] = n_remove
            if n_remove:
                resized = surgery.remove_units(link, keep, optimizer, strategy) or resized
        if last:
            resized = self._finish_padding() or resized
        elif surgery.should_compact(links):
            resized = surgery.compact(links, optimizer, strategy) or resized
        if resized:
            self._refresh()
        return removed

    def _refresh(self) -> None:
        """`surgery.refresh_model` after the target layers changed shape.

        When they are all resizable the traced functions stay valid and only
        the symbolic shapes are refreshed.
        """
        links, optimizer = self._target_links(), self.model.optimizer
        surgery.refresh_model(self.model, retrace=not surgery.resizable(links, optimizer))

    def get_state(self) -> dict:
        """The generator state and the epochs pruned so far (`events`)."""
        return {**super().get_state(), "events": [int(e) for e in self.events]}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.events = [int(e) for e in state.get("events", [])]

    def on_epoch_begin(self, epoch, logs=None):
        if self.alpha > 0 and self.schedule(epoch):
            total = self.params.get("epochs") if self.params else None
            self.prune(last=epoch >= self.schedule.last_event(total))
            self.events.append(epoch)

    def get_config(self):
        return {
            "alpha": self.alpha,
            **self.schedule.get_config(),
            "layers": self.layers,
            "criterion": self.criterion,
            "min_units": self.min_units,
            "seed": self.seed,
        }


class TopologyLogger(keras.callbacks.Callback):
    """Writes per-layer degree histograms of the SparseDense layers to TensorBoard.

    Every `histogram_freq` epochs, for every SparseDense layer, the in-degree
    of its neurons (`degree/<layer>/in`, connections from the previous
    layer) and, for hidden layers, their out-degree (`degree/<layer>/out`).
    They show SET's topology evolving from the initial Erdos-Renyi graph
    towards a scale-free one. Histograms only: the scalar counts
    (`neurons/...`, `params/...`) are in the epoch logs (see the module
    docstring), which a `TensorBoard` callback writes once, as
    `epoch_neurons/...` in its `train` run.

    Args:
        log_dir: Directory of the TensorBoard run; histograms go to the
            `topology` subdirectory. Required.
        histogram_freq: Frequency in epochs; 0 disables. Defaults to `1`.
    """

    def __init__(self, log_dir, histogram_freq=1):
        super().__init__()
        self.log_dir = check_dir("log_dir", log_dir)
        self.histogram_freq = check_int("histogram_freq", histogram_freq, 0)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "topology"))

    def on_epoch_end(self, epoch, logs=None):
        if not self.histogram_freq or epoch % self.histogram_freq:
            return
        histograms = {}
        for link in graph.links(self.model):
            layer = link.layer
            if not layer.built:
                continue
            out_idx = link.next.live_indices() if link.next is not None else np.zeros((0, 2))
            in_deg, out_deg = neuron_degrees(layer.live_indices(), out_idx, layer.units)
            histograms[f"degree/{layer.name}/in"] = in_deg
            if link.next is not None:
                histograms[f"degree/{layer.name}/out"] = out_deg
        write_histograms(self._writer, epoch, histograms)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"log_dir": self.log_dir, "histogram_freq": self.histogram_freq}


class TensorBoard(_keras.TensorBoardBase):
    """`keras.callbacks.TensorBoard` for models with SparseDense layers.

    The same callback, with two differences:

    - Weight histograms (`histogram_freq`) show each SparseDense layer's
      live `values` and `bias` only: not the int32 `indices`, whose
      histogram says nothing about training, nor the zero padding that
      neuron pruning keeps within `fit`. Other layers' weights are logged
      as Keras does.
    - `validation_name` names the run that receives the `val_` metrics
      (Keras's `validation`): the experiment app reports its test split
      there, as `test`.

    The topology scalars reach it through the logs (`epoch_neurons/...`,
    `epoch_params/...` in the `train` run); add `TopologyLogger` for the
    degree histograms.

    Args:
        log_dir: Directory of the TensorBoard runs. Defaults to `"logs"`.
        validation_name: Name of the run (subdirectory) of the `val_`
            metrics. Defaults to `"validation"`, as Keras.
        **kwargs: `keras.callbacks.TensorBoard` arguments.
    """

    def __init__(self, log_dir="logs", validation_name="validation", **kwargs):
        super().__init__(log_dir=log_dir, **kwargs)
        ok = isinstance(validation_name, str) and validation_name
        ok = ok and validation_name == os.path.basename(validation_name)
        if not ok or validation_name in (".", "..", "train"):
            raise ValueError(
                "Expected `validation_name` to be a folder name other than 'train'. "
                f"Received: validation_name={validation_name!r}"
            )
        self.validation_name = validation_name
        self.validation_run = validation_name

    def weight_to_log(self, layer, weight):
        # SparseDense weights at their live size; no index storage.
        return _histogram_value(layer, weight)


def _histogram_value(layer, weight):
    """What to log for `weight` of `layer`: its live part, or None for index storage."""
    if not isinstance(layer, SparseDense):
        return weight
    if weight is layer.indices:
        return None
    if weight is layer.values:
        return layer.live_values()
    if layer.bias is not None and weight is layer.bias:
        return layer.live_bias()
    return weight
