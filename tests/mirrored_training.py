"""Helper for test_distributed.py: trains under MirroredStrategy on two logical CPUs.

Run as a script in a fresh process (logical devices must be configured before
TensorFlow initialises them); prints one JSON object on its last line.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_npset import NeuronPruning, SETEvolution, SparseDense  # noqa: E402
from keras_npset.optimizer_state import slot_variables  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 12)).astype("float32")
Y = RNG.integers(0, 3, 64)


def build(functional):
    layers = [
        SparseDense(24, activation="relu", seed=1, name="h1"),
        keras.layers.LayerNormalization(name="ln"),
        SparseDense(16, activation="relu", seed=2, name="h2"),
        SparseDense(3, seed=3, name="out"),
    ]
    if not functional:
        return keras.Sequential([keras.Input((12,)), *layers])
    inputs = keras.Input((12,))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def train(strategy, functional, epochs):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build(functional)
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    callbacks = [
        SETEvolution(zeta=0.3, seed=4),
        NeuronPruning(alpha=0.25, start=1, epochs=1, seed=5),
    ]
    model.fit(X, Y, epochs=epochs, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    return model, callbacks


def replica_report(strategy, model):
    """For every variable and slot: do all replicas hold the same shape and value?"""
    report = {}
    for layer in model.layers:
        for weight in layer.weights:
            tracked = [(weight.path, weight)]
            tracked += [
                (f"{weight.path}#slot{i}", s)
                for i, s in enumerate(slot_variables(model.optimizer, weight))
            ]
            for name, var in tracked:
                copies = [np.asarray(c) for c in strategy.experimental_local_results(var.value)]
                report[name] = {
                    "replicas": len(copies),
                    "mirrored": type(var.value).__name__,
                    "same": all(
                        c.shape == copies[0].shape and np.array_equal(c, copies[0]) for c in copies
                    ),
                    "shape": list(copies[0].shape),
                }
    return report


def main(functional, epochs):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, cbs = train(strategy, functional, epochs)
    single, single_cbs = train(tf.distribute.get_strategy(), functional, epochs)
    # Training continues after the topology changes (the step after pruning
    # ran); predictions under the strategy as well.
    sparse = [layer for layer in mirrored.layers if isinstance(layer, SparseDense)]
    twins = [single.get_layer(layer.name) for layer in sparse]
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "events": [cbs[1].events, single_cbs[1].events],
        "units": [[layer.units for layer in sparse], [layer.units for layer in twins]],
        "indices_equal": all(
            np.array_equal(a.indices.numpy(), b.indices.numpy())
            for a, b in zip(sparse, twins, strict=True)
        ),
        "max_weight_diff": max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(mirrored.weights, single.weights, strict=True)
        ),
        "max_prediction_diff": float(
            np.max(np.abs(mirrored.predict(X, verbose=0) - single.predict(X, verbose=0)))
        ),
        "replica_vars": replica_report(strategy, mirrored),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(functional=sys.argv[1] == "functional", epochs=int(sys.argv[2]))
