"""Compiled TensorBoard summaries against eager `tf.summary` writing."""

import glob
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_npset.summaries import SummaryFunctions


def records(log_dir):
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                found[(value.tag, event.step)] = (array.dtype, array.tolist())
    return found


def write_eagerly(log_dir, steps):
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for step, (scalars, histograms) in steps:
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)
            for tag, value in histograms.items():
                tf.summary.histogram(tag, np.asarray(value, np.float32), step=step)
    writer.close()


def write_compiled(log_dir, steps):
    writer = tf.summary.create_file_writer(log_dir)
    functions = SummaryFunctions()
    for step, (scalars, histograms) in steps:
        functions.scalars(writer, step, scalars)
        functions.histograms(writer, step, histograms)
    writer.close()
    return functions


def test_compiled_summaries_equal_eager_ones(tmp_path):
    rng = np.random.default_rng(7)
    steps = []
    for step in range(4):
        scalars = {
            "epoch_loss": rng.normal(),
            "epoch_accuracy": np.float32(rng.random()),
            "epoch_params/total": int(rng.integers(100, 1000)),
        }
        # Histograms of a different length at every step: no re-trace.
        histograms = {
            "degree/h1/in": rng.integers(0, 30, 50 + step),
            "weights": rng.normal(size=20 + 3 * step),
        }
        steps.append((step, (scalars, histograms)))
    write_eagerly(str(tmp_path / "eager"), steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        functions = write_compiled(str(tmp_path / "compiled"), steps)
    eager, compiled = records(str(tmp_path / "eager")), records(str(tmp_path / "compiled"))
    assert len(eager) == 4 * 5
    assert compiled == eager
    # One function per (writer, tags); each traced once.
    assert len(functions._functions) == 2
    assert all(f.experimental_get_tracing_count() == 1 for f in functions._functions.values())


def test_empty_values_write_nothing(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    functions = SummaryFunctions()
    functions.scalars(writer, 0, {})
    functions.histograms(writer, 0, {})
    writer.close()
    assert functions._functions == {}
    assert records(str(tmp_path)) == {}


def test_many_writers_never_warn_of_retracing(tmp_path, caplog):
    """Each function traces once; TensorFlow's frequent-retracing warning stays silent."""
    functions = SummaryFunctions()
    for run in range(8):
        writer = tf.summary.create_file_writer(str(tmp_path / str(run)))
        for step in range(3):
            functions.scalars(writer, step, {"epoch_loss": 1.0 / (step + 1)})
            functions.histograms(writer, step, {"h": np.arange(step + 2)})
        writer.close()
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
