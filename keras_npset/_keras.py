"""Every use of a private Keras or TensorFlow name in keras_npset, in one place.

Changing a model's topology inside `fit` needs a few things that Keras 3 and
TensorFlow have no public API for: replacing a variable's storage, finding an
optimizer's per-variable slots, walking a model's symbolic graph, adding
entries to the epoch logs. Each such access is one small function here whose
docstring says what it relies on and against which versions it was checked;
no other module of the package touches a private Keras or TensorFlow name
(attributes a package layer sets on itself are its own).

On a Keras or TensorFlow upgrade, run `tests/test_keras_internals.py` first:
it has one test per function below, against real models and optimizers, so
a broken assumption fails there under the function's name. Then widen the
bounds in `pyproject.toml`.

Checked against: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0 (the
TensorFlow backend; the package supports no other). `pyproject.toml` bounds
both to these minor versions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import keras
import tensorflow as tf
from keras.src.models.functional import Functional
from keras.src.saving import saving_lib
from tensorflow.python.ops import control_flow_util, resource_variable_ops

from keras_npset import summaries

# ---------------------------------------------------------------- variables


def tf_storage(variable) -> tf.Variable | None:
    """The single eager `tf.Variable` behind a Keras variable, or None.

    Relies on: `keras.Variable.value` (public) being, for a variable created
    outside any `tf.distribute` strategy, an object of exactly
    `resource_variable_ops.ResourceVariable` (private module; the public
    `tf.Variable` is the abstract base that distributed and mirrored
    variables share, so it cannot tell them apart). None for anything else
    (a mirrored variable, an autocast wrapper, a placeholder): callers then
    take Keras's own path.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    storage = getattr(variable, "value", None)
    if type(storage) is resource_variable_ops.ResourceVariable:
        return storage
    return None


def distribute_strategy_of(variable):
    """The `tf.distribute` strategy whose scope created `variable`'s storage, or None.

    Relies on: TensorFlow's distributed variables (what `keras.Variable.value`
    is under `MirroredStrategy`) keeping their strategy in the private
    attribute `_distribute_strategy`; plain `ResourceVariable`s have none.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return getattr(getattr(variable, "value", None), "_distribute_strategy", None)


def replace_storage(variable, value) -> None:
    """Give a Keras variable new backing storage holding `value`, of any shape.

    Keras 3 variables cannot change shape (`assign` checks it), but layers,
    models and optimizers hold the `keras.Variable` object, so it must stay
    the same object. Relies on: `keras.Variable._initialize(value)` (the
    TensorFlow backend's `Variable._initialize`, which creates a new
    `tf.Variable` from `value` with the variable's dtype, trainability,
    name, aggregation and synchronization) and on the Keras variable caching
    its shape in `_shape` and `_ndim` (`KerasVariable.shape` returns
    `_shape`). Call it under `tf.init_scope()` and, for a mirrored variable,
    its strategy's scope.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    variable._initialize(value)
    variable._shape = tuple(value.shape)
    variable._ndim = len(value.shape)


def is_resizable(variable) -> bool:
    """Whether a Keras variable's storage has an unknown length (`make_resizable`)."""
    storage = getattr(variable, "value", None)
    shape = getattr(storage, "shape", None)
    return shape is not None and shape.rank is not None and shape.rank > 0 and shape[0] is None


def make_resizable(variable) -> None:
    """Give a Keras variable storage of unknown length (axis 0), holding its current value.

    Functions traced afterwards read it with an unknown shape, so a later
    `resize` (a value of another shape, in the same storage) keeps them
    valid: no re-trace, only XLA compilations at the new shapes. The Keras
    variable keeps the concrete shape of its value in `_shape` (its `assign`
    accepts the unknown-shaped values of a traced update). Relies on what
    `replace_storage` relies on, and on `keras.Variable._initialize`
    adopting a `tf.Variable` it is given; call it under `tf.init_scope()`
    and, for a mirrored variable, its strategy's scope.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    storage = variable.value
    variable._initialize(
        tf.Variable(
            storage.read_value(),
            shape=tf.TensorShape([None, *variable.shape[1:]]),
            dtype=storage.dtype,
            trainable=storage.trainable,
            name=variable.name,
            aggregation=storage.aggregation,
            synchronization=storage.synchronization,
        )
    )


def resize(variable, value) -> None:
    """Give a resizable Keras variable (`make_resizable`) a value of another shape, in place.

    The storage, its optimizer key and the functions that captured it stay
    valid. Relies on the Keras variable caching its shape in `_shape` and
    `_ndim`, as in `replace_storage`.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    variable.value.assign(value)
    variable._shape = tuple(value.shape)
    variable._ndim = len(value.shape)


# ---------------------------------------------------------------- optimizers


def optimizer_index(optimizer, variable) -> int | None:
    """Position of `variable` among the variables `optimizer` was built for, or None.

    None when `optimizer` is None, not built, or does not train `variable`.
    Relies on: `optimizer._trainable_variables_indices`, the dict from
    `optimizer._var_key(variable)` to the position that `build` gave the
    variable; on the TensorFlow backend `_var_key` is the `_unique_id` of
    the variable's `tf.Variable` storage (of its distributed container under
    a strategy), so it changes when the storage is replaced
    (`keep_optimizer_key`).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return None
    return optimizer._trainable_variables_indices.get(optimizer._var_key(variable))


@contextlib.contextmanager
def keep_optimizer_key(optimizer, variable):
    """Keep `variable` known to `optimizer` while the block replaces its storage.

    The optimizer finds a variable's slots through a key derived from its
    storage (see `optimizer_index`); when the block completes, the entry
    under the old key moves to the new one. Nothing happens for an
    optimizer that does not train `variable` (or None), or when the block
    raises.

    Relies on: `optimizer._var_key` and `optimizer._trainable_variables_indices`
    as in `optimizer_index`.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    index = optimizer_index(optimizer, variable)
    old_key = optimizer._var_key(variable) if index is not None else None
    yield
    if index is not None:
        new_key = optimizer._var_key(variable)
        if new_key != old_key:
            del optimizer._trainable_variables_indices[old_key]
            optimizer._trainable_variables_indices[new_key] = index


def optimizer_trainable_variables(optimizer) -> list:
    """The model variables `optimizer` was built for, in its index order.

    Relies on: `optimizer._trainable_variables`, set by
    `BaseOptimizer.build` (empty before). `optimizer.variables` is the
    optimizer's own state, not this list.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return list(optimizer._trainable_variables)


# Per optimizer class (exact type: a subclass may add state of its own), the
# attributes holding lists parallel to the optimizer's trainable variables
# whose entries are per-element state of the same shape as the variable. A
# list may be empty when its option is off (SGD without momentum, RMSprop not
# centered) or missing (Adam without amsgrad). Read from each class's `build`.
# A new element's slots start at zero, also where Keras would start them
# elsewhere (Adagrad's and Ftrl's accumulators start at
# `initial_accumulator_value`).
# Not listed, so refused: Adafactor (factored second moments: `_r`, `_c`
# have other shapes), Muon (Newton-Schulz on whole matrices),
# ScheduleFreeAdamW (its `_momentums` start at the variable's value),
# MultiOptimizer (slots live in inner optimizers), LossScaleOptimizer
# (unwrap it: its `inner_optimizer` owns the slots).
_SLOT_LISTS = {
    getattr(keras.optimizers, name, None): attrs
    for name, attrs in {
        "SGD": ("momentums",),
        "Adam": ("_momentums", "_velocities", "_velocity_hats"),
        "AdamW": ("_momentums", "_velocities", "_velocity_hats"),
        "Adamax": ("_m", "_u"),
        "Nadam": ("_momentums", "_velocities"),
        "RMSprop": ("_velocities", "_momentums", "_average_gradients"),
        "Adagrad": ("_accumulators",),
        "Adadelta": ("_accumulated_grads", "_accumulated_delta_vars"),
        "Ftrl": ("_accumulators", "_linears"),
        "Lion": ("_momentums",),
        "Lamb": ("_momentums", "_velocities"),
    }.items()
}
_SLOT_LISTS.pop(None, None)  # a class this Keras does not have
# Kept by the base optimizer for every class: the exponential moving average
# of each variable (`use_ema=True`) and the gradient accumulators
# (`gradient_accumulation_steps`).
_BASE_SLOT_LISTS = ("_model_variables_moving_average", "_accumulated_gradients")


def slot_variables(optimizer, variable) -> list:
    """The optimizer variables holding per-element state of `variable` (its slots).

    `[]` when `optimizer` is None, not built, or does not train `variable`
    (a non-trainable variable, or one of another model). Otherwise the
    entries at the variable's index (`optimizer_index`) of the lists that
    `_SLOT_LISTS` names for the optimizer's class, plus the base
    optimizer's EMA and gradient-accumulation lists, skipping empty lists
    and `None` entries (variables with `overwrite_with_gradient`).

    Relies on: the private attribute names in `_SLOT_LISTS`, each a list
    parallel to `optimizer_trainable_variables(optimizer)` whose entries
    have the variable's shape. Pass the optimizer that owns the slots (a
    `LossScaleOptimizer`'s `inner_optimizer`).

    Raises:
        ValueError: for an optimizer class not in `_SLOT_LISTS` (a new
            optimizer, a subclass, a wrapper), or when a listed attribute
            no longer is such a list (a changed Keras): the carry of its
            state across topology changes would be a guess.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    index = optimizer_index(optimizer, variable)
    if index is None:
        return []
    names = _SLOT_LISTS.get(type(optimizer))
    if names is None:
        raise ValueError(
            "keras_npset cannot carry the state of this optimizer across topology changes: "
            "it knows where the slots of "
            f"{sorted(cls.__name__ for cls in _SLOT_LISTS)} are (exact classes, no "
            f"subclasses). Received: optimizer of class {type(optimizer).__name__}"
        )
    count = len(optimizer._trainable_variables)
    slots = []
    for name in (*names, *_BASE_SLOT_LISTS):
        entries = getattr(optimizer, name, None)
        if entries is None or (isinstance(entries, list) and not entries):
            continue
        if not isinstance(entries, list) or len(entries) != count:
            raise ValueError(
                f"Expected `{type(optimizer).__name__}.{name}` to be a list of {count} slot "
                "variables, one per trainable variable (see keras_npset/_keras.py). "
                f"Received: {type(entries).__name__} of length {len(entries)}"
            )
        slot = entries[index]
        if slot is None:
            continue
        if not isinstance(slot, keras.Variable) or tuple(slot.shape) != tuple(variable.shape):
            raise ValueError(
                f"Expected `{type(optimizer).__name__}.{name}[{index}]` to be a variable of "
                f"shape {tuple(variable.shape)} (see keras_npset/_keras.py). Received: {slot!r}"
            )
        slots.append(slot)
    return slots


def override_optimizer_saving(optimizer, values: Callable[[], list]) -> Callable[[], None]:
    """Make `optimizer.save_own_variables` write `values()` instead of its variables.

    `values()` returns one array per entry of `optimizer.variables`, in that
    order. Installs an instance attribute that shadows the class method
    (what `model.save` and `keras_npset.checkpoint` call) and returns a
    function that removes it again.

    Relies on: `Optimizer.save_own_variables(store)` writing
    `store[str(i)] = variable.numpy()` for `i, variable in
    enumerate(optimizer.variables)`, the layout `load_own_variables`
    reads back (the `store` is otherwise opaque), and on the saving code
    looking the method up on the instance.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """

    def save_own_variables(store):
        for i, value in enumerate(values()):
            store[str(i)] = value

    optimizer.__dict__["save_own_variables"] = save_own_variables
    return lambda: optimizer.__dict__.pop("save_own_variables", None)


# ---------------------------------------------------------------- layers


def own_variables(layer) -> list:
    """The variables `layer` itself created, in the order Keras saves them.

    Relies on: `Layer.save_own_variables` writing
    `layer._trainable_variables + layer._non_trainable_variables` under keys
    `"0"`, `"1"`, ..., and `Layer.load_own_variables` reading them back in
    that order (`layer.weights` adds sub-layers' weights and drops
    duplicates, so it is not the same list in general).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return layer._trainable_variables + layer._non_trainable_variables


def set_build_input_width(layer, width: int) -> None:
    """Record `width` as the last axis of every input shape `layer` was built with.

    Relies on: `Layer.build`'s wrapper storing the shapes it was called with
    in `layer._build_shapes_dict` (argument name to shape), which
    `Layer.get_build_config` saves and `summary` shows for a layer outside
    a model graph. Nothing when the layer has no record.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    shapes = getattr(layer, "_build_shapes_dict", None)
    if shapes:
        for key, shape in shapes.items():
            if shape is not None:
                shapes[key] = (*tuple(shape)[:-1], width)


def seed_generators(layer) -> list:
    """The `keras.random.SeedGenerator`s `layer` draws from (Dropout & co.).

    Relies on: `Layer._seed_generators`, the list Keras's attribute tracking
    fills with every `SeedGenerator` assigned to the layer (its `variables`
    include their `state`).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return list(getattr(layer, "_seed_generators", ()))


def keras_logits(tensor):
    """The logits Keras cached on the output of a sigmoid or softmax, or None.

    Relies on: `keras.activations.sigmoid` / `softmax` (and the TensorFlow
    backend's `nn.sigmoid`) setting the private attribute `_keras_logits`
    on the tensor they return, as Keras's own cross-entropies read it.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return getattr(tensor, "_keras_logits", None)


# ---------------------------------------------------------------- models


def all_layers(model) -> list:
    """`model` and every layer inside it, nested ones included, in a stable order.

    The order depends only on the model's structure, so a model rebuilt
    from its config repeats it. Relies on: `Layer._flatten_layers(
    include_self=True, recursive=True)` (a depth-first walk of `_layers`
    without duplicates); there is no public equivalent (`model.layers` is
    the top level only).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return list(model._flatten_layers(include_self=True, recursive=True))


def is_functional(model) -> bool:
    """Whether `model` is a functional model (built from `keras.Input` and layer calls).

    Relies on: `keras.src.models.functional.Functional`, the class
    `keras.Model(inputs, outputs)` returns; it is not exported publicly
    (`keras.Sequential` is, and is not a subclass of it).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return isinstance(model, Functional)


def outbound_operations(layer) -> list:
    """The operations (layers) that were called on `layer`'s outputs, in call order.

    One entry per call, so an operation may repeat. Relies on: every
    `keras.Operation` keeping the `Node`s of the calls that consumed its
    outputs in `_outbound_nodes`, each with the consuming `operation`.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return [node.operation for node in layer._outbound_nodes]


def model_to_json(model) -> str:
    """The JSON config of `model` that `model.save` writes into a `.keras` file.

    Relies on: `keras.src.saving.saving_lib._serialize_model_as_json`, which
    serializes under an `ObjectSharingScope` (objects used twice, a shared
    sub-model for one, are written once and shared again on loading);
    the public `keras.saving.serialize_keras_object` lacks that scope.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    config_json, _ = saving_lib._serialize_model_as_json(model)
    return config_json


def model_from_json(config_json: str, custom_objects=None):
    """The compiled model of a `model_to_json` config, as `keras.models.load_model` builds it.

    Always in safe mode (a config never runs code, e.g. of a `Lambda`
    layer). Relies on: `keras.src.saving.saving_lib._model_from_config(
    config_json, custom_objects, compile, safe_mode)`, which deserializes
    under an `ObjectSharingScope` (see `model_to_json`) and compiles from the
    saved compile config.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    return saving_lib._model_from_config(config_json, custom_objects, compile=True, safe_mode=True)


def _tf_functions(function, depth: int = 3) -> list:
    """The `tf.function`s that `function` is or closes over, `depth` closures deep."""
    if isinstance(function, tf.types.experimental.PolymorphicFunction):
        return [function]
    found = []
    if depth and callable(function):
        for cell in getattr(function, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                found += _tf_functions(cell.cell_contents, depth - 1)
    return found


def omit_retracing_warnings(model) -> None:
    """Silence TensorFlow's "triggered tf.function retracing" warning for `model`'s functions.

    After a topology change that re-creates storage, the model's
    train/test/predict functions are rebuilt and traced anew on purpose; from
    the sixth such rebuild TensorFlow would call it "excessive retracing"
    (it counts traces per Python code object, and each rebuild makes a new
    `tf.function` of the same code). Relies on: Keras's
    `TensorFlowTrainer.make_train_function` / `make_test_function` /
    `make_predict_function` storing `train_function`, `test_function`,
    `predict_function` as the `tf.function`s or as plain functions that close
    over them, and on TensorFlow's `Function._omit_frequent_tracing_warning`,
    the flag its frequent-tracing detector reads.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    for name in ("train_function", "test_function", "predict_function"):
        for function in _tf_functions(getattr(model, name, None)):
            function._omit_frequent_tracing_warning = True


def rebuild_sequential_graph(model) -> bool:
    """Re-create the symbolic graph of a Sequential model that starts with an `Input`.

    Returns whether `model` is a Sequential with a graph (False for other
    models and for a Sequential built from data, without an `Input`). The
    new graph records the layers' current widths, so `summary()` and
    `model.output_shape` show them. Relies on: `Sequential._functional` (the functional model it
    builds from `_layers`, None until built) and `Sequential._layers` (its
    layers, an `InputLayer` first when it has an `Input`), and on
    `Sequential.build` re-creating `_functional` when it is None.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    if not isinstance(model, keras.Sequential) or model._functional is None:
        return False
    first = model._layers[0] if model._layers else None
    if isinstance(first, keras.layers.InputLayer):
        model._functional = None
        model.build(first.batch_shape)
    return True


def refresh_symbolic_shapes(model) -> None:
    """Re-record the output shape of every layer call in a functional model's graph.

    Each node's output shape is recomputed from its inputs' with the layer's
    `compute_output_shape`, from the inputs outwards; layers that cannot
    (and nodes with several outputs) keep their record. Nothing for a model
    without a graph. Relies on: `Functional._nodes_by_depth` (depth to the
    `Node`s at it, inputs at the greatest depth), `Node.operation`,
    `Node.arguments.keras_tensors` and `Node.outputs`, and on a
    `KerasTensor` keeping its shape in `_shape` (its public `shape` is
    read-only).

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if not nodes_by_depth:
        return
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer) or not node.arguments:
                continue
            inputs = node.arguments.keras_tensors
            try:
                shape = op.compute_output_shape(
                    inputs[0].shape if len(inputs) == 1 else [t.shape for t in inputs]
                )
            except Exception:  # layers without compute_output_shape keep their record
                continue
            if len(node.outputs) == 1 and isinstance(shape, tuple):
                node.outputs[0]._shape = tuple(shape)


def wrap_epoch_logs(model, transform: Callable[[dict], dict]) -> Callable[[], None]:
    """Pass the logs that `model.fit` and `model.evaluate` assemble through `transform`.

    `transform(logs)` receives what Keras would return (normally a dict of
    metric results) and returns the logs to use instead. Installed on the
    model instance; returns a function that removes it. Relies on: the
    TensorFlow trainer building the epoch logs, before any callback's
    `on_epoch_end`, and `evaluate`'s results, with
    `self._get_metrics_result_or_logs(logs)` looked up on the instance.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    original = model._get_metrics_result_or_logs

    def patched(logs):
        return transform(original(logs))

    model.__dict__["_get_metrics_result_or_logs"] = patched
    return lambda: model.__dict__.pop("_get_metrics_result_or_logs", None)


# ---------------------------------------------------------------- tracing


def in_xla_context() -> bool:
    """Whether the function being traced now is compiled with XLA (`jit_compile=True`).

    Relies on: `tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext`
    on the default graph (True inside a `tf.function(jit_compile=True)`
    and the functions it calls); TensorFlow has no public test for it.
    False in eager mode.

    Checked: Keras 3.12.0, 3.14.0 and 3.15.1 with TensorFlow 2.21.0.
    """
    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


class TensorBoardBase(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` with its two private hooks given public names.

    Relies on (checked on Keras 3.12, 3.14, 3.15): `set_model` sets
    `_log_write_dir` and `_val_dir`, and the validation writer is opened lazily
    from `_val_dir`; `on_epoch_end` calls `_log_epoch_metrics(epoch, logs)`, and
    `_log_weights(epoch)` when `histogram_freq` divides the epoch;
    `_train_writer` / `_val_writer` are the runs' writers;
    `_collect_learning_rate(logs)` and `_compute_steps_per_second()` add what
    Keras logs besides the metrics; `_should_trace` and
    `_should_write_train_graph` say whether a batch hook has work to do;
    `_log_weight_as_image(weight, name, epoch)` writes an image.

    Subclasses set `validation_run` (the folder of the `val_` metrics) and
    override `weight_to_log(layer, weight)`. Epoch scalars and weight
    histograms are written with one op per run and epoch
    (`keras_npset.summaries`): the same tags and values, a fraction of the time.
    """

    validation_run = "validation"

    def set_model(self, model):
        super().set_model(model)
        self._val_dir = os.path.join(self._log_write_dir, self.validation_run)

    def on_train_batch_end(self, batch, logs=None):
        # With epoch summaries only, Keras's hook writes its batch scalars to no
        # writer (a no-op that still costs a millisecond per call): skip it.
        idle = self.update_freq == "epoch" and not self.write_steps_per_second
        if idle and not self._should_trace and not self._should_write_train_graph:
            return
        super().on_train_batch_end(batch, logs)

    def _log_epoch_metrics(self, epoch, logs):
        # Keras's tags and runs, written by one op per run (see
        # keras_npset.summaries) instead of one eager op per value.
        if not logs:
            return
        train_logs = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val_logs = {k: v for k, v in logs.items() if k.startswith("val_")}
        train_logs = self._collect_learning_rate(train_logs)
        if self.write_steps_per_second:
            train_logs["steps_per_second"] = self._compute_steps_per_second()
        if train_logs:
            values = {f"epoch_{name}": value for name, value in train_logs.items()}
            summaries.write_scalars(self._train_writer, epoch, values)
        if val_logs:
            values = {f"epoch_{name[4:]}": value for name, value in val_logs.items()}
            summaries.write_scalars(self._val_writer, epoch, values)

    def weight_to_log(self, layer, weight):
        """The tensor whose histogram stands for `weight` of `layer`, or None to skip it."""
        return weight

    def _log_weights(self, epoch):
        histograms = {}
        with self._train_writer.as_default():
            for layer in self.model.layers:
                for weight in layer.weights:
                    value = self.weight_to_log(layer, weight)
                    if value is None:
                        continue
                    name = weight.path.replace(":", "_")
                    histograms[f"{name}/histogram"] = keras.ops.convert_to_numpy(value)
                    if self.write_images:
                        self._log_weight_as_image(value, f"{name}/image", epoch)
        summaries.write_histograms(self._train_writer, epoch, histograms)
        self._train_writer.flush()
