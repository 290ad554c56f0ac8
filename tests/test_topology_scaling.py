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


def test_finish_set_memory_is_proportional_to_nnz():
    """The merge's temporaries stay near 32 bytes per connection (NumPy allocations traced)."""
    import tracemalloc

    rng = np.random.default_rng(4)
    shape = (4000, 3000)
    indices = T.erdos_renyi_indices(*shape, rng, epsilon=20).astype(np.int32)
    plan = T.plan_set(indices, rng.standard_normal(len(indices)), shape, 0.3)
    new_keys = T.sample_free_positions(plan.kept_keys, shape[0] * shape[1], plan.n_new, rng)
    tracemalloc.start()
    try:
        rewiring = T.finish_set(plan, new_keys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The result alone is 16 B per connection (int32 pair and int64 source).
    assert 16 * len(indices) <= peak <= 36 * len(indices), peak / len(indices)
    T.check_indices(rewiring.indices, shape)
