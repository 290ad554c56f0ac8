"""Summaries built in NumPy (keras_npset.summaries) against eager `tf.summary` writing."""

import glob
import os
import time

import numpy as np
import tensorflow as tf

from keras_npset.summaries import write_histograms, write_scalars


def records(log_dir):
    """`{(tag, step): (dtype, values, plugin)}` of every summary value in `log_dir`."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                found[(value.tag, event.step)] = (array.dtype, array.tolist(), plugin)
    return found


def steps_of_values(rng):
    steps = []
    for step in range(4):
        scalars = {
            "epoch_loss": rng.normal(),
            "epoch_accuracy": np.float32(rng.random()),
            "epoch_params/total": int(rng.integers(100, 1000)),
            "epoch_lr": tf.constant(0.01),
        }
        histograms = {
            "degree/h1/in": rng.integers(0, 30, 50 + step),
            "weights": rng.normal(size=(20 + 3 * step, 2)).astype(np.float32),
            "constant": np.full(5, 2.0),
            "empty": np.zeros(0),
        }
        steps.append((step, scalars, histograms))
    return steps


def test_summaries_equal_eager_tf_summary(tmp_path):
    steps = steps_of_values(np.random.default_rng(7))
    eager = tf.summary.create_file_writer(str(tmp_path / "eager"))
    with eager.as_default():
        for step, scalars, histograms in steps:
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)
            for tag, value in histograms.items():
                tf.summary.histogram(tag, value, step=step)
    eager.close()
    ours = tf.summary.create_file_writer(str(tmp_path / "ours"))
    for step, scalars, histograms in steps:
        write_scalars(ours, step, scalars)
        write_histograms(ours, step, histograms)
    ours.close()
    expected, written = records(str(tmp_path / "eager")), records(str(tmp_path / "ours"))
    assert len(expected) == 4 * 8
    # Same tags, steps, dtypes (float32 scalars, float64 buckets), values and plugins.
    assert written == expected


def test_no_values_write_nothing(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_scalars(writer, 0, {})
    write_histograms(writer, 0, {})
    writer.close()
    assert records(str(tmp_path)) == {}


def test_one_op_per_epoch_is_cheaper_than_eager_writing(tmp_path):
    # A wide-margin ratio, not an absolute time: 30 scalars one by one against one write.
    writer = tf.summary.create_file_writer(str(tmp_path))
    values = {f"epoch_m{i}": float(i) for i in range(30)}

    def eager(step):
        with writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, value, step=step)

    def ours(step):
        write_scalars(writer, step, values)

    eager(0), ours(0)  # first calls create the ops
    timings = {}
    for name, write in (("eager", eager), ("ours", ours)):
        start = time.perf_counter()
        for step in range(1, 21):
            write(step)
        timings[name] = time.perf_counter() - start
    writer.close()
    assert timings["ours"] < timings["eager"] / 3, timings
