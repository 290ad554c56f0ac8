"""TensorBoard summaries built in NumPy and written with one op per writer and epoch.

An eager `tf.summary.scalar` costs about a millisecond (a histogram several):
a run that logs some 30 scalars per epoch spent tens of milliseconds on it, as
much as an epoch of a small network. A compiled `tf.function` would write them
faster but costs seconds to trace (a histogram's bucketing graph most). Here
each value becomes a `Summary` protobuf in NumPy, with TensorBoard's own
`scalar_pb` / `histogram_pb` (the same tags, float32 scalars and float64
buckets that `tf.summary.scalar` / `tf.summary.histogram` write), and all of
an epoch's values for one writer go to its event file in a single
`tf.summary.experimental.write_raw_pb` call: about a millisecond in all, with
nothing to trace.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb


def write_scalars(writer, step: int, values: Mapping[str, float]) -> None:
    """Writes `values` (tag -> number) to `writer` as float32 scalars at `step`."""
    summary = summary_pb2.Summary()
    for tag, value in values.items():
        summary.value.extend(scalar_pb(tag, np.float32(_to_float(value))).value)
    _write(writer, step, summary)


def write_histograms(writer, step: int, values: Mapping[str, np.ndarray]) -> None:
    """Writes each array of `values` (tag -> array) to `writer` as a histogram at `step`.

    30 buckets over [min, max] of the values in float64, as `tf.summary.histogram`.
    """
    summary = summary_pb2.Summary()
    for tag, value in values.items():
        data = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        summary.value.extend(histogram_pb(tag, data.astype(np.float64).reshape(-1)).value)
    _write(writer, step, summary)


def _write(writer, step: int, summary) -> None:
    if not summary.value:
        return
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))


def _to_float(value) -> float:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(value)
