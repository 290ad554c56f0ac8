"""Invariants of the vectorised topology functions (`unique_sorted`, sampling, rewiring)."""

import numpy as np
import pytest

from keras_npset import topology as T


def test_unique_sorted_matches_numpy():
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 1000):
        flat = rng.integers(0, 50, size, dtype=np.int64)
        np.testing.assert_array_equal(T.unique_sorted(flat), np.unique(flat))


@pytest.mark.parametrize(
    "occupied,total,count",
    [
        ([0, 3, 5], 20, 4),  # rejection sampling
        (list(range(16)), 20, 2),  # mostly occupied: enumerated
        ([1, 2], 20, 15),  # most free positions wanted: enumerated
    ],
)
def test_sample_free_positions_uniform_distinct_sorted(occupied, total, count):
    rng = np.random.default_rng(1)
    occupied = np.array(occupied, np.int64)
    hits = np.zeros(total)
    trials = 4000
    for _ in range(trials):
        got = T.sample_free_positions(occupied, total, count, rng)
        assert got.size == count and np.all(np.diff(got) > 0)
        assert not np.isin(got, occupied).any()
        hits[got] += 1
    free = np.setdiff1d(np.arange(total), occupied)
    expected = count / free.size
    np.testing.assert_allclose(hits[free] / trials, expected, atol=0.05)
    assert hits[occupied].sum() == 0


@pytest.mark.parametrize("shape,epsilon", [((50, 40), 3), ((10, 10), 4), ((700, 600), 10)])
def test_set_rewire_keeps_nnz_and_carries_sources(shape, epsilon):
    rng = np.random.default_rng(2)
    indices = T.erdos_renyi_indices(*shape, rng, epsilon=epsilon)
    values = rng.standard_normal(len(indices))
    rewiring = T.set_rewire(indices, values, shape, 0.3, rng)
    T.check_indices(rewiring.indices, shape)
    assert len(rewiring.indices) == len(indices)
    kept = rewiring.source >= 0
    np.testing.assert_array_equal(rewiring.indices[kept], indices[rewiring.source[kept]])
    removed = T.set_removal_mask(values, 0.3)
    assert rewiring.new_mask.sum() == removed.sum()
    assert set(rewiring.source[kept]) == set(np.flatnonzero(~removed))


def test_erdos_renyi_draw_count_and_order():
    rng = np.random.default_rng(3)
    indices = T.erdos_renyi_indices(3000, 2000, rng, epsilon=20)
    T.check_indices(indices, (3000, 2000))
    draws = 20 * 5000
    # Few collisions at this density: nnz is just below the number of draws.
    assert 0.98 * draws < len(indices) <= draws


def test_set_step_runs_on_a_layer_too_large_for_any_dense_temporary():
    """Plan, regrowth and merge of a SET step at 2**31 - 1 inputs and units.

    About 4.6e18 positions: a dense temporary of even one bit per position
    (5.8e17 bytes) cannot be allocated, so the step succeeding on 200k
    connections shows that its work and memory follow nnz, not the layer's
    size, without timing or measuring memory.
    """
    rng = np.random.default_rng(4)
    n = 2**31 - 1  # the widest layer int32 indices address
    shape, total = (n, n), n * n
    keys = T.unique_sorted(rng.integers(0, total, 200_000, dtype=np.int64))
    indices = T.indices_from_keys(keys, shape).astype(np.int32)  # tile order
    T.check_indices(indices, shape)
    values = rng.standard_normal(len(indices))
    plan = T.plan_set(indices, values, shape, 0.3)
    new_keys = T.sample_free_positions(plan.kept_keys, total, plan.n_new, rng)
    rewiring = T.finish_set(plan, new_keys)
    T.check_indices(rewiring.indices, shape)
    assert len(rewiring.indices) == len(indices)
    kept = rewiring.source >= 0
    np.testing.assert_array_equal(rewiring.indices[kept], indices[rewiring.source[kept]])
    assert rewiring.new_mask.sum() == plan.n_new == T.set_removal_mask(values, 0.3).sum()
