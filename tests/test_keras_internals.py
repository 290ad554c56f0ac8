"""The Keras / TensorFlow internals that `keras_npset._keras` relies on, one test each.

Run this file first after upgrading Keras or TensorFlow: each test names the
`_keras` function whose assumption broke. The tests use real models and
optimizers (SGD with momentum and Adam at least) on the installed versions.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import _keras


def _mlp():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(2),
        ]
    )


def _trained(optimizer, model=None):
    model = model or _mlp()
    model.compile(optimizer, "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, 2)), epochs=1, verbose=0)
    return model


# ---------------------------------------------------------------- variables


def test_tf_storage():
    variable = keras.Variable(np.zeros(3, "float32"))
    storage = _keras.tf_storage(variable)
    assert isinstance(storage, tf.Variable) and storage is variable.value
    # A raw read of the storage is the variable's value.
    variable.assign(np.arange(3.0))
    value = tf.raw_ops.ReadVariableOp(resource=storage.handle, dtype=storage.dtype)
    np.testing.assert_array_equal(value.numpy(), [0.0, 1.0, 2.0])
    # A mirrored variable has no single storage.
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored = keras.Variable(np.zeros(3, "float32"))
    assert _keras.tf_storage(mirrored) is None
    assert _keras.tf_storage(np.zeros(3)) is None


def test_distribute_strategy_of():
    assert _keras.distribute_strategy_of(keras.Variable(np.zeros(2, "float32"))) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variable = keras.Variable(np.zeros(2, "float32"))
    assert _keras.distribute_strategy_of(variable) is strategy


def test_replace_storage():
    variable = keras.Variable(np.zeros(3, "float32"), name="v")
    old = variable.value
    with tf.init_scope():
        _keras.replace_storage(variable, np.arange(5, dtype="float32"))
    assert variable.value is not old
    assert tuple(variable.shape) == (5,) and variable.ndim == 1
    assert variable.dtype == "float32" and variable.trainable and variable.name == "v"
    np.testing.assert_array_equal(variable.numpy(), np.arange(5.0))
    variable.assign(np.ones(5))  # assign checks against the new shape
    np.testing.assert_array_equal(variable.numpy(), 1.0)
    with tf.init_scope():
        _keras.replace_storage(variable, np.zeros((2, 3), "float32"))
    assert tuple(variable.shape) == (2, 3) and variable.ndim == 2


def test_replace_storage_under_a_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variable = keras.Variable(np.zeros(3, "float32"))
    with strategy.scope(), tf.init_scope():
        _keras.replace_storage(variable, np.arange(4, dtype="float32"))
    assert _keras.distribute_strategy_of(variable) is strategy
    np.testing.assert_array_equal(variable.numpy(), np.arange(4.0))


def test_make_resizable_and_resize():
    variable = keras.Variable(np.arange(6, dtype="float32").reshape(3, 2), name="v")
    assert not _keras.is_resizable(variable)
    with tf.init_scope():
        _keras.make_resizable(variable)
    assert _keras.is_resizable(variable)
    assert variable.value.shape.as_list() == [None, 2]  # only the length is unknown
    assert tuple(variable.shape) == (3, 2) and variable.trainable and variable.name == "v"
    np.testing.assert_array_equal(variable.numpy(), np.arange(6.0).reshape(3, 2))
    storage = variable.value

    @tf.function
    def total():
        return tf.reduce_sum(tf.convert_to_tensor(variable)), tf.shape(variable)[0]

    assert [int(t) for t in total()] == [15, 3]
    with tf.init_scope():
        _keras.resize(variable, np.ones((5, 2), "float32"))
    assert variable.value is storage and tuple(variable.shape) == (5, 2)
    assert [int(t) for t in total()] == [10, 5]  # the traced function reads the new value
    assert total.experimental_get_tracing_count() == 1
    variable.assign(np.zeros((5, 2)))  # Keras's assign checks against the new shape
    with pytest.raises(ValueError, match="must match"):
        variable.assign(np.zeros((4, 2)))


def test_make_resizable_under_a_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variable = keras.Variable(np.zeros(3, "float32"))
    with strategy.scope(), tf.init_scope():
        _keras.make_resizable(variable)
    assert _keras.distribute_strategy_of(variable) is strategy and _keras.is_resizable(variable)
    with tf.init_scope():
        _keras.resize(variable, np.arange(4, dtype="float32"))
    np.testing.assert_array_equal(variable.numpy(), np.arange(4.0))


# ---------------------------------------------------------------- optimizers


@pytest.mark.parametrize(
    "make", [lambda: keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.Adam]
)
def test_optimizer_index(make):
    model = _trained(make())
    optimizer = model.optimizer
    for i, variable in enumerate(model.trainable_variables):
        assert _keras.optimizer_index(optimizer, variable) == i
    assert _keras.optimizer_index(optimizer, keras.Variable(np.zeros(2))) is None
    assert _keras.optimizer_index(optimizer, model.optimizer.iterations) is None
    assert _keras.optimizer_index(make(), model.trainable_variables[0]) is None  # not built
    assert _keras.optimizer_index(None, model.trainable_variables[0]) is None


@pytest.mark.parametrize(
    "make", [lambda: keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.Adam]
)
def test_keep_optimizer_key(make):
    model = _trained(make())
    optimizer = model.optimizer
    bias = model.layers[-1].bias
    index = _keras.optimizer_index(optimizer, bias)
    with _keras.keep_optimizer_key(optimizer, bias), tf.init_scope():
        _keras.replace_storage(bias, np.zeros(3, "float32"))
    assert _keras.optimizer_index(optimizer, bias) == index
    optimizer._check_variables_are_known([bias])  # what apply() checks
    assert len(optimizer._trainable_variables_indices) == len(model.trainable_variables)
    # An unknown variable and no optimizer: nothing to keep, nothing raised.
    other = keras.Variable(np.zeros(2, "float32"))
    with _keras.keep_optimizer_key(optimizer, other), tf.init_scope():
        _keras.replace_storage(other, np.zeros(3, "float32"))
    with _keras.keep_optimizer_key(None, other):
        pass


def test_optimizer_trainable_variables():
    model = _trained(keras.optimizers.Adam())
    got = _keras.optimizer_trainable_variables(model.optimizer)
    assert [id(v) for v in got] == [id(v) for v in model.trainable_variables]
    assert _keras.optimizer_trainable_variables(keras.optimizers.SGD()) == []


# Each supported family with every option that adds a slot list switched on,
# and the number of slots a variable gets.
SLOT_FAMILIES = {
    "sgd": (lambda: keras.optimizers.SGD(0.1), 0),
    "sgd_momentum": (lambda: keras.optimizers.SGD(0.1, momentum=0.9), 1),
    "adam": (lambda: keras.optimizers.Adam(0.01), 2),
    "adam_amsgrad": (lambda: keras.optimizers.Adam(0.01, amsgrad=True), 3),
    "adamw": (lambda: keras.optimizers.AdamW(0.01, amsgrad=True), 3),
    "adamax": (lambda: keras.optimizers.Adamax(0.01), 2),
    "nadam": (lambda: keras.optimizers.Nadam(0.01), 2),
    "rmsprop": (lambda: keras.optimizers.RMSprop(0.01), 1),
    "rmsprop_full": (lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True), 3),
    "adagrad": (lambda: keras.optimizers.Adagrad(0.01), 1),
    "adadelta": (lambda: keras.optimizers.Adadelta(0.01), 2),
    "ftrl": (lambda: keras.optimizers.Ftrl(0.01), 2),
    "lion": (lambda: keras.optimizers.Lion(0.01), 1),
    "lamb": (lambda: keras.optimizers.Lamb(0.01), 2),
    "sgd_ema": (lambda: keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True), 2),
    "adam_accumulation": (lambda: keras.optimizers.Adam(0.01, gradient_accumulation_steps=2), 3),
}


def _parallel_lists(optimizer, variable, index):
    """Every attribute entry that looks like a slot of `variable` (the old heuristic)."""
    count = len(optimizer._trainable_variables)
    found = set()
    for value in vars(optimizer).values():
        if isinstance(value, list | tuple) and len(value) == count:
            slot = value[index]
            if (
                isinstance(slot, keras.Variable)
                and slot is not variable
                and tuple(slot.shape) == tuple(variable.shape)
            ):
                found.add(id(slot))
    return found


@pytest.mark.parametrize("name", SLOT_FAMILIES)
def test_slot_variables(name):
    make, count = SLOT_FAMILIES[name]
    model = _trained(make())
    optimizer = model.optimizer
    for index, variable in enumerate(model.trainable_variables):
        slots = _keras.slot_variables(optimizer, variable)
        assert len(slots) == count
        assert all(tuple(s.shape) == tuple(variable.shape) for s in slots)
        assert all(any(s is v for v in optimizer.variables) for s in slots)
        # Nothing parallel to the trainable variables is left undeclared: a
        # Keras that adds slot state to a family fails here.
        assert {id(s) for s in slots} == _parallel_lists(optimizer, variable, index)
    # Slots of one variable are not the slots of another.
    first, second = (_keras.slot_variables(optimizer, v) for v in model.trainable_variables[:2])
    assert not {id(s) for s in first} & {id(s) for s in second}
    # Untrained variables have none.
    assert _keras.slot_variables(optimizer, keras.Variable(np.zeros(2))) == []


def test_slot_variables_are_the_ones_the_update_uses():
    model = _trained(keras.optimizers.SGD(0.1, momentum=0.9))
    kernel = model.layers[0].kernel
    (momentum,) = _keras.slot_variables(model.optimizer, kernel)
    gradient = np.ones(tuple(kernel.shape), "float32")
    before_m, before_k = momentum.numpy().copy(), kernel.numpy().copy()
    model.optimizer.apply(
        [gradient if v is kernel else tf.zeros_like(v) for v in model.trainable_variables]
    )
    np.testing.assert_allclose(momentum.numpy(), 0.9 * before_m - 0.1 * gradient, rtol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), before_k + momentum.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.optimizers.Adafactor(),
        lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
        lambda: type("MyAdam", (keras.optimizers.Adam,), {})(),
    ],
    ids=["adafactor", "loss_scale_wrapper", "subclass"],
)
def test_slot_variables_refuses_unknown_optimizers(make):
    model = _trained(make())
    with pytest.raises(ValueError, match="cannot carry the state of this optimizer"):
        _keras.slot_variables(model.optimizer, model.trainable_variables[0])


@pytest.mark.parametrize(
    "make", [lambda: keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.Adam]
)
def test_override_optimizer_saving(make):
    model = _trained(make())
    optimizer = model.optimizer
    keras_store = {}
    optimizer.save_own_variables(keras_store)
    # Keras's own layout, reproduced from `values()`:
    remove = _keras.override_optimizer_saving(
        optimizer, lambda: [v.numpy() for v in optimizer.variables]
    )
    ours = {}
    optimizer.save_own_variables(ours)
    assert list(ours) == list(keras_store)
    for key in ours:
        np.testing.assert_array_equal(ours[key], keras_store[key])
    # Keras's loader reads it back, and `model.save` goes through it.
    fresh = _trained(make())
    fresh.optimizer.load_own_variables(ours)
    for a, b in zip(fresh.optimizer.variables, optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    remove()
    assert "save_own_variables" not in vars(optimizer)
    remove()  # idempotent


def test_override_optimizer_saving_is_what_model_save_writes(tmp_path):
    model = _trained(keras.optimizers.SGD(0.1, momentum=0.9))
    optimizer = model.optimizer
    remove = _keras.override_optimizer_saving(
        optimizer, lambda: [np.full(v.shape, 7, v.dtype) for v in optimizer.variables]
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    remove()
    loaded = keras.models.load_model(path)
    assert all(np.all(v.numpy() == 7) for v in loaded.optimizer.variables)


# ---------------------------------------------------------------- layers


def test_own_variables():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 3))
    own = _keras.own_variables(layer)
    assert [v.name for v in own] == ["gamma", "beta", "moving_mean", "moving_variance"]
    store = {}
    layer.save_own_variables(store)  # what Keras saves, in this order
    assert list(store) == [str(i) for i in range(len(own))]
    assert all(store[str(i)] is v for i, v in enumerate(own))
    # Not `weights` in general: a wrapper's sub-layer weights are not its own.
    wrapper = keras.layers.Bidirectional(keras.layers.SimpleRNN(2))
    wrapper.build((None, 3, 2))
    assert _keras.own_variables(wrapper) == [] and wrapper.weights


def test_set_build_input_width():
    layer = keras.layers.LayerNormalization()
    layer.build((None, 7))
    _keras.set_build_input_width(layer, 4)
    assert tuple(layer.get_build_config()["input_shape"]) == (None, 4)
    clone = keras.layers.LayerNormalization.from_config(layer.get_config())
    clone.build_from_config(layer.get_build_config())
    assert tuple(clone.gamma.shape) == (4,)
    _keras.set_build_input_width(keras.layers.Dense(2), 4)  # unbuilt: nothing


def test_seed_generators():
    dropout = keras.layers.Dropout(0.5, seed=3)
    (generator,) = _keras.seed_generators(dropout)
    assert isinstance(generator, keras.random.SeedGenerator)
    assert any(v is generator.state for v in dropout.variables)
    assert _keras.seed_generators(keras.layers.Dense(2)) == []
    # Restoring the state restores the draws.
    x = np.ones((1, 64), "float32")
    state = generator.state.numpy().copy()
    first = dropout(x, training=True).numpy()
    generator.state.assign(state)
    np.testing.assert_array_equal(dropout(x, training=True).numpy(), first)


def test_keras_logits():
    seen = {}

    @tf.function
    def f(x):
        seen["sigmoid"] = _keras.keras_logits(keras.activations.sigmoid(x)) is x
        seen["softmax"] = _keras.keras_logits(keras.activations.softmax(x)) is x
        seen["relu"] = _keras.keras_logits(keras.activations.relu(x))
        return x

    f(tf.ones((2, 3)))
    assert seen == {"sigmoid": True, "softmax": True, "relu": None}


# ---------------------------------------------------------------- models


def _nested():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")])
    inputs = keras.Input((4,))
    x = inner(inputs)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs), inner


def test_all_layers():
    model, inner = _nested()
    layers = _keras.all_layers(model)
    assert layers[0] is model
    assert inner in layers and inner.layers[0] in layers
    assert len({id(layer) for layer in layers}) == len(layers)
    names = [layer.name for layer in layers]
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in _keras.all_layers(clone)][1:] == names[1:]


def test_is_functional():
    model, inner = _nested()
    assert _keras.is_functional(model)
    assert not _keras.is_functional(inner)  # Sequential

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert not _keras.is_functional(Subclassed())


def test_outbound_operations():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")
    b = keras.layers.Dense(3, name="b")
    c = keras.layers.Dense(3, name="c")
    x = a(inputs)
    y, z = b(x), c(x)
    keras.Model(inputs, [keras.layers.Add()([y, z]), b(z)])
    assert [op.name for op in _keras.outbound_operations(a)] == ["b", "c"]
    assert [op.name for op in _keras.outbound_operations(c)][-1] == "b"
    assert _keras.outbound_operations(keras.layers.Dense(2)) == []


def test_model_to_json_and_model_from_json(tmp_path):
    shared = keras.layers.Dense(3, name="shared")
    inputs = keras.Input((4,))
    outputs = keras.layers.Add()([shared(inputs), shared(inputs)])
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse", metrics=["mae"])
    config_json = _keras.model_to_json(model)
    config = json.loads(config_json)
    assert config["class_name"] == "Functional" and "compile_config" in config
    loaded = _keras.model_from_json(config_json)
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert loaded.optimizer.momentum == 0.9
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert len(loaded.get_layer("shared").weights) == 2  # shared, built once
    # The same config `model.save` writes into a `.keras` file.
    path = str(tmp_path / "m.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("config.json")) == config


def test_model_from_json_is_safe():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    with pytest.raises(ValueError, match="unsafe|safe_mode"):
        _keras.model_from_json(_keras.model_to_json(model))


def test_rebuild_sequential_graph():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(2)])
    first = model.layers[0]
    with tf.init_scope():  # narrow the first layer as neuron pruning does
        _keras.replace_storage(first.kernel, np.zeros((4, 3), "float32"))
        _keras.replace_storage(first.bias, np.zeros(3, "float32"))
    first.units = 3
    second = model.layers[1]
    _keras.set_build_input_width(second, 3)
    with tf.init_scope():
        _keras.replace_storage(second.kernel, np.zeros((3, 2), "float32"))
    second.input_spec = None
    assert _keras.rebuild_sequential_graph(model)
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert "(None, 3)" in "\n".join(lines)  # the first layer's new width
    assert model.output_shape == (None, 2)
    assert model.predict(np.ones((2, 4)), verbose=0).shape == (2, 2)
    # Not a Sequential with a graph: nothing done.
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    assert not _keras.rebuild_sequential_graph(unbuilt)
    functional, _ = _nested()
    assert not _keras.rebuild_sequential_graph(functional)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_omit_retracing_warnings(caplog, steps_per_execution):
    # Whether TensorFlow would warn without it depends on what ran before in the
    # process (its detector is global), so the flag it reads is checked directly;
    # tests/test_features.py shows the warning itself, with and without.
    x = np.random.default_rng(0).standard_normal((16, 5)).astype("float32")
    y = np.random.default_rng(1).standard_normal((16, 2)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(6):  # a new function of the same code, traced each time
            model.make_train_function(force=True)
            model.make_test_function(force=True)
            model.make_predict_function(force=True)
            functions = [
                f
                for name in ("train_function", "test_function", "predict_function")
                for f in _keras._tf_functions(getattr(model, name))
            ]
            assert len(functions) >= 3  # one at least behind each
            assert not any(f._omit_frequent_tracing_warning for f in functions)
            _keras.omit_retracing_warnings(model)
            assert all(f._omit_frequent_tracing_warning for f in functions)
            model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y))
            model.predict(x, verbose=0)
    assert [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()] == []


def test_refresh_symbolic_shapes():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, name="hidden")
    x = hidden(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inputs, outputs)
    hidden.units = 3  # Dense.compute_output_shape reads `units`
    _keras.refresh_symbolic_shapes(model)
    assert model.get_layer("hidden").output.shape == (None, 3)
    assert model.get_layer("act").output.shape == (None, 3)
    assert model.output_shape == (None, 2)
    _keras.refresh_symbolic_shapes(keras.Sequential([keras.layers.Dense(2)]))  # no graph


def test_wrap_epoch_logs():
    model = _mlp()
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
    calls = []

    def add(logs):
        calls.append(dict(logs))
        return {**logs, "extra": 1.0}

    seen = {}

    class Peek(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.update(logs)

    remove = _keras.wrap_epoch_logs(model, add)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[Peek()])
    assert history.history["extra"] == [1.0, 1.0]
    assert seen["extra"] == 1.0  # there before the callbacks' on_epoch_end
    assert "loss" in calls[0]
    assert model.evaluate(x, y, verbose=0, return_dict=True)["extra"] == 1.0
    remove()
    assert "_get_metrics_result_or_logs" not in vars(model)
    assert "extra" not in model.fit(x, y, epochs=1, verbose=0).history


# ---------------------------------------------------------------- tracing


def test_in_xla_context():
    seen = {}

    def probe(key):
        def f(x):
            seen[key] = _keras.in_xla_context()
            return x + 1

        return f

    tf.function(probe("xla"), jit_compile=True)(tf.ones(2))
    tf.function(probe("graph"))(tf.ones(2))
    probe("eager")(tf.ones(2))

    inner = tf.function(probe("nested"))
    tf.function(lambda x: inner(x), jit_compile=True)(tf.ones(2))
    assert seen == {"xla": True, "graph": False, "eager": False, "nested": True}


def test_tensorboard_base_hooks(tmp_path):
    class Only(_keras.TensorBoardBase):
        validation_run = "held_out"

        def weight_to_log(self, layer, weight):
            return weight if "kernel" in weight.path else None

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    model.fit(
        x, y, validation_data=(x, y), epochs=1, verbose=0,
        callbacks=[Only(log_dir=str(tmp_path), histogram_freq=1)],
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held_out", "train"]
    tags = set()
    for path in (tmp_path / "train").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {v.tag for v in event.summary.value}
    hist = {t for t in tags if t.endswith("/histogram")}
    assert hist == {"sequential/d/kernel/histogram"}, tags
