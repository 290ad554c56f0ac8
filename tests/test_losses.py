"""SETSquaredError against a NumPy transcription of the original SET code's training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_npset import SparseDense
from keras_npset.losses import SETSquaredError, set_squared_error


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _dense(layer):
    return layer.to_dense_kernel().astype(np.float64), layer.bias.numpy().astype(np.float64)


class OriginalSETMLP:
    """The original SET-MLP training step in NumPy (float64), written from its equations.

    Forward: ReLU hidden layers, sigmoid output. Output delta per sample and unit:
    `(p - y) * s'(p)` with `s'(p) = sigmoid(p) * (1 - sigmoid(p))` applied to the
    activated output. Hidden deltas: `(delta @ W.T) * relu'(z)`. Gradients: `dW = a.T @
    delta / batch` at the connections only, `db = mean(delta)`. Update per layer:
    `pdw = m * pdw - lr * dW; W += pdw - wd * W` (biases alike), all layers after
    all gradients are computed.
    """

    def __init__(self, weights, masks, lr, momentum, weight_decay):
        self.w = [w.copy() for w, _ in weights]
        self.b = [b.copy() for _, b in weights]
        self.masks = masks
        self.lr, self.m, self.wd = lr, momentum, weight_decay
        self.pdw = [np.zeros_like(w) for w in self.w]
        self.pdb = [np.zeros_like(b) for b in self.b]

    def step(self, x, y):
        a, zs = [x], []
        for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            z = a[-1] @ w + b
            zs.append(z)
            a.append(_sigmoid(z) if i == len(self.w) - 1 else np.maximum(z, 0.0))
        p = a[-1]
        s = _sigmoid(p)
        delta = (p - y) * s * (1.0 - s)
        grads = [None] * len(self.w)
        for i in reversed(range(len(self.w))):
            dw = a[i].T @ delta / len(x) * self.masks[i]
            grads[i] = (dw, delta.mean(axis=0))
            if i:
                delta = (delta @ self.w[i].T) * (zs[i - 1] > 0)
        for i, (dw, db) in enumerate(grads):
            self.pdw[i] = self.m * self.pdw[i] - self.lr * dw
            self.pdb[i] = self.m * self.pdb[i] - self.lr * db
            self.w[i] += self.pdw[i] - self.wd * self.w[i]
            self.b[i] += self.pdb[i] - self.wd * self.b[i]
        return 0.5 * np.mean(np.sum((p - y) ** 2, axis=1))


def _tiny_mlp(rng, n_in, hidden, n_out, output_activation):
    inputs = keras.Input((n_in,))
    x = inputs
    widths = [*hidden, n_out]
    for i, units in enumerate(widths):
        last = i == len(widths) - 1
        x = SparseDense(
            units,
            epsilon=2,
            activation=output_activation if last else "relu",
            bias_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=10 + i),
            kernel_initializer="set_normal",
            seed=i,
        )(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "output_activation, from_logits, steps_per_execution",
    [("sigmoid", False, 1), ("sigmoid", False, 3), ("linear", True, 1)],
)
def test_training_steps_match_original_update_rule(
    rng, output_activation, from_logits, steps_per_execution
):
    n_in, hidden, n_out, batch, lr, momentum, wd = 12, [9, 7], 5, 4, 0.05, 0.9, 0.0002
    model = _tiny_mlp(rng, n_in, hidden, n_out, output_activation)
    layers = [layer for layer in model.layers if isinstance(layer, SparseDense)]
    # Larger weights than N(0,1)/10, so the step is far from linear and every term matters.
    for layer in layers:
        layer.values.assign(rng.standard_normal(layer.nnz).astype("float32"))
    reference = OriginalSETMLP(
        [_dense(layer) for layer in layers],
        [(layer.to_dense_kernel() != 0).astype(np.float64) for layer in layers],
        lr,
        momentum,
        wd,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=momentum, weight_decay=wd / lr),
        loss=SETSquaredError(from_logits=from_logits),
        steps_per_execution=steps_per_execution,
    )
    x = rng.standard_normal((3 * batch, n_in)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, n_out, 3 * batch), n_out).astype("float32")
    history = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    losses = [reference.step(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]

    for layer, w, b in zip(layers, reference.w, reference.b, strict=True):
        idx = layer.indices.numpy()
        np.testing.assert_allclose(layer.values.numpy(), w[idx[:, 0], idx[:, 1]], atol=2e-6)
        np.testing.assert_allclose(layer.bias.numpy(), b, atol=2e-6)
        assert np.abs(layer.values.numpy()).max() > 0.5  # the comparison is not of zeros
    np.testing.assert_allclose(history.history["loss"][0], np.mean(losses), rtol=1e-5)


def test_gradient_at_logits_is_the_original_delta_not_keras_mse(rng):
    logits = tf.constant(rng.standard_normal((6, 15)).astype("float32") * 3)
    y = tf.constant(keras.utils.to_categorical(rng.integers(0, 15, 6), 15))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours = SETSquaredError(from_logits=True)(y, logits)
        keras_mse = keras.losses.MeanSquaredError()(y, tf.sigmoid(logits))
    p = _sigmoid(logits.numpy().astype(np.float64))
    s = _sigmoid(p)
    expected = (p - y.numpy()) * s * (1 - s) / 6  # batch mean, no division by the 15 outputs
    np.testing.assert_allclose(tape.gradient(ours, logits), expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        tape.gradient(keras_mse, logits), (2 / 15) * (p - y.numpy()) * p * (1 - p) / 6, rtol=1e-4
    )
    np.testing.assert_allclose(ours, 0.5 * np.mean(np.sum((p - y.numpy()) ** 2, axis=1)), rtol=1e-6)


def test_probabilities_without_cached_logits_give_the_same_gradient(rng):
    logits = tf.constant(rng.standard_normal((5, 4)).astype("float32"))
    y = tf.constant(keras.utils.to_categorical(rng.integers(0, 4, 5), 4))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        probs = tf.sigmoid(logits)  # a plain TF op: no `_keras_logits` on it
        from_probs = SETSquaredError()(y, probs)
        from_logits = SETSquaredError(from_logits=True)(y, logits)
    np.testing.assert_allclose(from_probs, from_logits, rtol=1e-6)
    np.testing.assert_allclose(
        tape.gradient(from_probs, logits), tape.gradient(from_logits, logits), rtol=1e-4, atol=1e-7
    )


def test_functional_form_and_reduction(rng):
    p = rng.uniform(0.05, 0.95, (3, 4)).astype("float32")
    y = keras.utils.to_categorical([0, 3, 1], 4)
    per_sample = set_squared_error(y, p).numpy()
    np.testing.assert_allclose(per_sample, 0.5 * np.sum((p - y) ** 2, axis=1), rtol=1e-5)
    np.testing.assert_allclose(SETSquaredError(reduction="sum")(y, p), per_sample.sum(), rtol=1e-5)


def test_config_round_trip_and_save_load(tmp_path, rng):
    loss = SETSquaredError(from_logits=True, name="paper")
    clone = SETSquaredError.from_config(loss.get_config())
    assert clone.from_logits is True and clone.name == "paper"
    model = _tiny_mlp(rng, 6, [5], 3, "sigmoid")
    model.compile(optimizer="sgd", loss=SETSquaredError())
    x = rng.standard_normal((4, 6)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, SETSquaredError)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0))


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_from_logits_must_be_bool(bad):
    with pytest.raises(ValueError, match=r"from_logits.*Received: from_logits="):
        SETSquaredError(from_logits=bad)
