"""TensorBoard summaries written by one compiled call per writer and epoch.

An eager `tf.summary.scalar` costs about a millisecond, a histogram several:
a run that logs some 30 scalars and a few degree histograms per epoch spent
tens of milliseconds on it, as much as an epoch of a small network. Written
from one `tf.function` per writer and set of tags, the same summaries cost
well under a millisecond each. The event files hold the same tags, steps and
float32 values as eager writing.

`SummaryFunctions` keeps those functions. It traces a function once for each
writer and tuple of tags (and, for histograms, a rank-1 input of any length),
so a run with the same tags every epoch never re-traces.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import tensorflow as tf


class SummaryFunctions:
    """Compiled scalar and histogram writers, one per (writer, tags).

    Call `clear()` when the writers are closed (a callback's
    `on_train_end`): a function holds its writer.
    """

    def __init__(self):
        self._functions: dict[tuple, tf.types.experimental.GenericFunction] = {}

    def clear(self) -> None:
        self._functions = {}

    def scalars(self, writer, step: int, values: Mapping[str, float]) -> None:
        """Writes `values` (tag -> number) as float32 scalars at `step`."""
        if not values:
            return
        tags = tuple(values)
        function = self._function(_write_scalars, writer, tags, None)
        data = np.asarray([_to_float(values[tag]) for tag in tags], np.float32)
        function(tf.constant(step, tf.int64), tf.constant(data))

    def histograms(self, writer, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Writes each array of `values` (tag -> array) as a histogram at `step`."""
        if not values:
            return
        tags = tuple(values)
        signature = [tf.TensorSpec([], tf.int64)]
        signature += [tf.TensorSpec([None], tf.float32)] * len(tags)
        function = self._function(_write_histograms, writer, tags, signature)
        arrays = [tf.constant(np.asarray(values[tag], np.float32).reshape(-1)) for tag in tags]
        function(tf.constant(step, tf.int64), *arrays)

    def _function(self, write, writer, tags, signature):
        key = (write, id(writer), tags)
        function = self._functions.get(key)
        if function is None:
            # A partial, not a closure: TensorFlow counts traces per code object,
            # and warns of "retracing" when many functions of one `def` trace.
            function = tf.function(
                functools.partial(write, writer, tags),
                autograph=False,
                input_signature=signature,
            )
            self._functions[key] = function
        return function


def _write_scalars(writer, tags, step, data):
    with writer.as_default(step=step):
        for i, tag in enumerate(tags):
            tf.summary.scalar(tag, data[i])


def _write_histograms(writer, tags, step, *data):
    with writer.as_default(step=step):
        for tag, array in zip(tags, data, strict=True):
            tf.summary.histogram(tag, array)


def _to_float(value) -> float:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(value)
