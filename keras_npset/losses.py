"""The training signal of the original SET code as a Keras loss.

The public SET-MLP code (Mocanu et al. 2018), on which NPSET (Liu, Mocanu &
Pechenizkiy 2019) was built, trains a sigmoid output layer with what it calls
"MSE". Per sample and output unit it back-propagates

    delta = (p - y) * s'(p),    s'(p) = sigmoid(p) * (1 - sigmoid(p)),

where `p` is the sigmoid output: the sigmoid derivative is applied to the
*already activated* output. Weight gradients are averaged over the batch;
nothing is divided by the number of outputs `C`. Keras's `"mse"` averages
over the `C` outputs and differentiates the sigmoid properly, which gives
`(2 / C) (p - y) p (1 - p)` at the pre-activation: at `C = 15` a step 7.5x
smaller, enough to cost the paper's small-sample datasets many points of
accuracy. `SETSquaredError` reproduces the original signal exactly.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_npset import _keras
from keras_npset.validation import check_bool

# Probabilities are clipped into [EPSILON, 1 - EPSILON] when the logits must be
# recovered from them (see `SETSquaredError`).
EPSILON = 1e-7


@tf.custom_gradient
def _set_squared_error(y_true, logits):
    """Half the summed squared error of sigmoid(logits), with the original SET gradient."""
    p = tf.sigmoid(logits)
    error = p - y_true
    value = 0.5 * tf.reduce_sum(tf.square(error), axis=-1)

    def grad(upstream):
        s = tf.sigmoid(p)  # the original's s'(p): the derivative taken at the output p
        delta = error * s * (1.0 - s)
        return tf.zeros_like(y_true), upstream[..., None] * delta

    return value, grad


@keras.saving.register_keras_serializable(package="keras_npset")
class SETSquaredError(keras.losses.Loss):
    """The original SET code's loss for a sigmoid output layer.

    Per sample the value is `0.5 * sum((p - y) ** 2)` over the output units,
    with `p = sigmoid(logits)`; its gradient with respect to the logits is,
    per unit, exactly the original code's output delta
    `(p - y) * sigmoid(p) * (1 - sigmoid(p))` (the sigmoid derivative applied
    to the activated output, as that code does; not `p * (1 - p)`). Nothing
    is divided by the number of units; with Keras's default reduction the
    loss, and so every weight gradient, is averaged over the batch, as in the
    original. Together with `keras.optimizers.SGD(learning_rate=lr,
    momentum=m, weight_decay=wd / lr)` one step updates every weight and bias
    exactly as the original code's `pdw = m * pdw - lr * dW;
    W += pdw - wd * W`.

    Use it on a model whose output layer has a sigmoid activation (the
    default, `from_logits=False`), or on a linear output layer with
    `from_logits=True`. With `from_logits=False` the logits are taken from
    the sigmoid activation when Keras has cached them on its output (a
    `keras.activations.sigmoid` output inside a traced step, as Keras's own
    `binary_crossentropy` does); otherwise they are recovered from the
    probabilities clipped into `[1e-7, 1 - 1e-7]`, which stops the gradient
    of outputs saturated at exactly 0 or 1 in float32.

    Args:
        from_logits: Whether `y_pred` holds logits rather than sigmoid
            probabilities. Defaults to `False`.
        reduction: Keras loss reduction. Defaults to
            `"sum_over_batch_size"` (the batch mean, as the original).
        name: Name of the loss. Defaults to `"set_squared_error"`.
        dtype: Dtype of the loss computation. Defaults to `None`.

    Example:

    ```python
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras_npset.losses.SETSquaredError(),
        metrics=["categorical_accuracy"],
    )
    ```
    """

    def __init__(
        self,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="set_squared_error",
        dtype=None,
    ):
        from_logits = check_bool("from_logits", from_logits)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        if self.from_logits:
            logits = y_pred
        else:
            logits = _keras.keras_logits(y_pred)
            if logits is None:
                p = tf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON)
                logits = tf.math.log(p) - tf.math.log1p(-p)
        return _set_squared_error(y_true, tf.cast(logits, y_pred.dtype))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


def set_squared_error(y_true, y_pred, from_logits=False):
    """Functional form of `SETSquaredError`: one value per sample."""
    return SETSquaredError(from_logits=from_logits, reduction=None)(y_true, y_pred)
