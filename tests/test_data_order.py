"""Tests for keras_npset.experiments.data_order: per-epoch orders, aligned multi-step execution."""

import numpy as np
import pytest

from keras_npset.experiments import data_order


def test_epoch_batches_follow_the_per_epoch_orders():
    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(10)
    dataset, steps = data_order.epoch_batches(x, y, 4, seed=3, initial_epoch=1, epochs=4)
    assert steps == 3  # batches of 4, 4 and 2
    seen = [b.numpy() for _, b in dataset]
    assert [len(b) for b in seen] == [4, 4, 2] * 3
    for k, epoch in enumerate(range(1, 4)):
        order = np.concatenate(seen[3 * k : 3 * k + 3])
        np.testing.assert_array_equal(order, data_order.epoch_order(3, epoch, 10))
    xs = np.concatenate([b.numpy() for b, _ in dataset])
    np.testing.assert_array_equal(xs[:, 0], np.concatenate(seen))


def test_epoch_batches_run_without_the_autotuner():
    # Deleting an iterator waits for the tf.data autotuner's thread: up to 5 s at
    # the end of fit in about half of the runs, while the pipeline tunes nothing.
    x, y = np.zeros((6, 3), np.float32), np.arange(6)
    dataset, _ = data_order.epoch_batches(x, y, 2, seed=0, initial_epoch=0, epochs=2)
    assert dataset.options().autotune.enabled is False


@pytest.mark.parametrize("n, static", [(12, True), (10, False)])
def test_batch_size_is_static_when_every_batch_is_full(n, static):
    x, y = np.zeros((n, 3), np.float32), np.arange(n)
    dataset, steps = data_order.epoch_batches(x, y, 4, seed=0, initial_epoch=0, epochs=2)
    assert dataset.element_spec[0].shape.as_list() == [4 if static else None, 3]
    seen = np.concatenate([b.numpy() for _, b in dataset])
    np.testing.assert_array_equal(np.sort(seen[:n]), np.arange(n))  # nothing dropped
    assert seen.size == 2 * n and steps == -(-n // 4)


@pytest.mark.parametrize("chunk_bytes, full", [(1, False), (96, False), (96, True)])
def test_chunked_gathers_give_the_same_batches(monkeypatch, chunk_bytes, full):
    # 8-byte samples (x and y float32): 96 bytes gather four batches of 3 at
    # a time, 1 byte one batch. An epoch of 23 samples is chunked 12 + 11
    # and ends with a batch of 2; one of 24 is chunked 12 + 12.
    monkeypatch.setattr(data_order, "GATHER_CHUNK_BYTES", chunk_bytes)
    n = 24 if full else 23
    x = np.arange(n, dtype=np.float32)[:, None] * 2.0
    y = np.arange(n, dtype=np.float32) + 100.0
    dataset, steps = data_order.epoch_batches(x, y, 3, seed=5, initial_epoch=2, epochs=4)
    expected = []
    for epoch in (2, 3):
        order = data_order.epoch_order(5, epoch, n)
        expected += [order[i : i + 3] for i in range(0, n, 3)]
    got = list(dataset)
    assert steps == 8 and len(got) == len(expected) == 16
    for (xb, yb), idx in zip(got, expected, strict=True):
        np.testing.assert_array_equal(xb.numpy(), x[idx])
        np.testing.assert_array_equal(yb.numpy(), y[idx])
    assert dataset.element_spec[0].shape.as_list() == [3 if full else None, 1]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(batch_size=2.0),
        dict(initial_epoch=3, epochs=3),
        dict(initial_epoch=-1),
    ],
)
def test_epoch_batches_rejects(kwargs):
    args = dict(batch_size=2, seed=0, initial_epoch=0, epochs=2) | kwargs
    with pytest.raises(ValueError, match="Expected .*Received"):
        data_order.epoch_batches(np.zeros((4, 2)), np.zeros(4), **args)


@pytest.mark.parametrize(
    "requested, steps, expected",
    [(1, 24, 1), (8, 24, 8), (8, 25, 5), (8, 7, 7), (100, 24, 24), (5, 13, 1), (6, 12, 6)],
)
def test_execution_steps_divide_the_epoch(requested, steps, expected):
    got = data_order.execution_steps(requested, steps)
    assert got == expected
    assert steps % got == 0 and got <= requested


@pytest.mark.parametrize("requested, steps", [(0, 24), (8, 0), (True, 24), (2.0, 24)])
def test_execution_steps_rejects(requested, steps):
    with pytest.raises(ValueError, match="Expected .*integer >= 1.*Received"):
        data_order.execution_steps(requested, steps)
