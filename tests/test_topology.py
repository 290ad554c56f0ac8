"""Pure topology math, tested without Keras against brute-force NumPy references."""

import numpy as np
import pytest

from keras_npset import topology as T


def random_topology(rng, n_in, n_out, nnz):
    flat = np.sort(rng.choice(n_in * n_out, size=nnz, replace=False))
    return T.indices_from_flat(flat, n_out)


def test_flat_round_trip(rng):
    idx = random_topology(rng, 13, 7, 40)
    np.testing.assert_array_equal(T.indices_from_flat(T.flat_positions(idx, 7), 7), idx)


@pytest.mark.parametrize("tile", [3, 4, 7, 100])
def test_order_keys_rank_positions_by_tile_then_row_major(tile):
    shape = (5, 7)
    every = np.argwhere(np.ones(shape, bool))  # all positions, row-major
    keys = T.order_keys(every, shape, tile)
    np.testing.assert_array_equal(np.sort(keys), np.arange(35))  # a bijection
    # Sorting by key = sorting by (tile, row, col).
    expected = np.lexsort((every[:, 1], every[:, 0], every[:, 1] // tile))
    np.testing.assert_array_equal(np.argsort(keys), expected)
    np.testing.assert_array_equal(T.indices_from_keys(keys, shape, tile), every)
    if tile >= 7:  # one tile: plain row-major
        np.testing.assert_array_equal(keys, T.flat_positions(every, 7))


def test_tile_order_sorts_row_major_indices_of_a_wide_kernel(rng, small_tiles):
    shape = (9, 8)
    idx = random_topology(rng, *shape, 30)  # row-major
    order = T.tile_order(idx, shape)
    assert order is not None
    T.check_indices(idx[order], shape)
    assert T.tile_order(idx[order], shape) is None
    with pytest.raises(AssertionError, match="tile order"):
        T.check_indices(idx, shape)


@pytest.mark.parametrize(
    "n_in,n_out,eps", [(325, 300, 10), (500, 1000, 10), (1000, 2, 10), (7, 5, 3)]
)
def test_erdos_renyi_in_small_tiles_is_the_row_major_topology_reordered(
    rng, small_tiles, n_in, n_out, eps
):
    idx = T.erdos_renyi_indices(n_in, n_out, np.random.default_rng(5), epsilon=eps)
    T.check_indices(idx, (n_in, n_out))
    assert np.all(idx[:, 1] < n_out)
    dense = T.erdos_renyi_indices(n_in, n_out, np.random.default_rng(6), density=0.1)
    T.check_indices(dense, (n_in, n_out))


@pytest.mark.parametrize(
    "n_in,n_out,eps", [(325, 300, 10), (500, 1000, 10), (1000, 2, 10), (7, 5, 3)]
)
def test_erdos_renyi_matches_collapsed_draws(rng, n_in, n_out, eps):
    idx = T.erdos_renyi_indices(n_in, n_out, rng, epsilon=eps)
    T.check_indices(idx, (n_in, n_out))
    draws = eps * (n_in + n_out)
    total = n_in * n_out
    # Expected distinct positions among `draws` uniform draws with replacement.
    expected = total * (1 - (1 - 1 / total) ** draws)
    assert abs(len(idx) - expected) < 5 * np.sqrt(expected) + 2


def test_erdos_renyi_paper_parameter_counts():
    """Table 3's SET-MLP counts come from ER layers with epsilon 10 (docs/paper.md)."""
    rng = np.random.default_rng(0)
    lung = sum(
        len(T.erdos_renyi_indices(a, b, rng, 10)) for a, b in [(325, 300), (300, 300), (300, 7)]
    )
    madelon = sum(
        len(T.erdos_renyi_indices(a, b, rng, 10)) for a, b in [(500, 1000), (1000, 1000), (1000, 2)]
    )
    assert abs(lung - 13446) / 13446 < 0.01
    assert abs(madelon - 36563) / 36563 < 0.01


def test_erdos_renyi_density_exact_and_seeded():
    a = T.erdos_renyi_indices(50, 40, np.random.default_rng(3), density=0.25)
    b = T.erdos_renyi_indices(50, 40, np.random.default_rng(3), density=0.25)
    assert len(a) == 500
    np.testing.assert_array_equal(a, b)
    full = T.erdos_renyi_indices(6, 4, np.random.default_rng(0), density=1.0)
    assert len(full) == 24


def test_sample_free_positions_avoids_occupied_and_is_uniform(rng):
    occupied = np.sort(rng.choice(100, 60, replace=False))
    counts = np.zeros(100)
    for _ in range(400):
        new = T.sample_free_positions(occupied, 100, 10, rng)
        assert len(np.unique(new)) == 10
        assert not np.isin(new, occupied).any()
        counts[new] += 1
    free = np.setdiff1d(np.arange(100), occupied)
    assert counts[occupied].sum() == 0
    # 4000 draws over 40 free positions: about 100 each.
    assert counts[free].min() > 50 and counts[free].max() < 160
    with pytest.raises(ValueError, match="only 40 of 100"):
        T.sample_free_positions(occupied, 100, 41, rng)


def test_sample_free_positions_dense_regime_enumerates(rng):
    occupied = np.sort(rng.choice(1000, 990, replace=False))
    new = T.sample_free_positions(occupied, 1000, 10, rng)
    np.testing.assert_array_equal(np.sort(new), np.setdiff1d(np.arange(1000), occupied))


def test_set_removal_mask_matches_sorted_reference(rng):
    values = rng.standard_normal(1000)
    values[:7] = 0.0
    zeta = 0.3
    remove = T.set_removal_mask(values, zeta)
    pos, neg = values[values > 0], values[values < 0]
    k_pos, k_neg = int(zeta * pos.size), int(zeta * neg.size)
    expected = values == 0
    expected |= (values > 0) & (values <= np.sort(pos)[k_pos - 1])
    expected |= (values < 0) & (values >= np.sort(neg)[::-1][k_neg - 1])
    np.testing.assert_array_equal(remove, expected)
    assert remove.sum() == 7 + k_pos + k_neg


@pytest.mark.parametrize("tiled", [False, True])
def test_set_rewire_invariants(rng, monkeypatch, tiled):
    if tiled:
        monkeypatch.setattr(T, "TILE_COLS", 7)
    shape = (60, 50)
    idx = random_topology(rng, *shape, 600)
    idx = idx[np.argsort(T.order_keys(idx, shape))]
    values = rng.standard_normal(600)
    r = T.set_rewire(idx, values, shape, 0.3, rng)
    T.check_indices(r.indices, shape)
    assert len(r.indices) == 600  # nnz constant
    removed = T.set_removal_mask(values, 0.3)
    # Kept connections are exactly the unremoved ones, each carried from its old slot.
    kept = r.source >= 0
    np.testing.assert_array_equal(np.sort(r.source[kept]), np.flatnonzero(~removed))
    np.testing.assert_array_equal(r.indices[kept], idx[r.source[kept]])
    assert r.new_mask.sum() == removed.sum()
    assert abs(r.new_mask.mean() - 0.3) < 0.02
    # The topology actually changed.
    assert not np.array_equal(T.flat_positions(r.indices, 50), T.flat_positions(idx, 50))


@pytest.mark.parametrize("tile", [None, 7])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_finish_set_equals_sorting_survivors_and_new_connections(rng, monkeypatch, tile, dtype):
    if tile is not None:
        monkeypatch.setattr(T, "TILE_COLS", tile)
    shape = (60, 50)
    idx = T.erdos_renyi_indices(*shape, rng, epsilon=6).astype(dtype)
    plan = T.plan_set(idx, rng.standard_normal(len(idx)), shape, 0.3)
    new_keys = T.sample_free_positions(plan.kept_keys, 60 * 50, plan.n_new, rng)
    r = T.finish_set(plan, new_keys)
    # Reference: survivors then new connections, sorted by their order keys.
    together = np.concatenate([idx[plan.keep], T.indices_from_keys(new_keys, shape)])
    source = np.concatenate([np.flatnonzero(plan.keep), np.full(plan.n_new, -1)])
    order = np.argsort(T.order_keys(together, shape))
    assert r.indices.dtype == dtype
    np.testing.assert_array_equal(r.indices, together[order])
    np.testing.assert_array_equal(r.source, source[order])
    T.check_indices(r.indices, shape)


def test_set_rewire_zero_zeta_and_dense_layer_unchanged(rng):
    idx = random_topology(rng, 10, 10, 30)
    values = rng.standard_normal(30)
    r = T.set_rewire(idx, values, (10, 10), 0.0, rng)
    np.testing.assert_array_equal(r.indices, idx)
    assert not r.new_mask.any()
    dense = T.indices_from_flat(np.arange(12), 3)
    r = T.set_rewire(dense, rng.standard_normal(12), (4, 3), 0.3, rng)
    np.testing.assert_array_equal(r.indices, dense)
    np.testing.assert_array_equal(r.source, np.arange(12))


def test_set_rewire_nearly_dense_layer(rng):
    # 19 of 20 positions used: regrowth must use the one free or the freed positions.
    idx = T.indices_from_flat(np.delete(np.arange(20), 7), 4)
    r = T.set_rewire(idx, rng.standard_normal(19), (5, 4), 0.3, rng)
    T.check_indices(r.indices, (5, 4))
    assert len(r.indices) == 19


def test_set_rewire_seeded():
    idx = random_topology(np.random.default_rng(0), 30, 30, 200)
    values = np.random.default_rng(1).standard_normal(200)
    a = T.set_rewire(idx, values, (30, 30), 0.3, np.random.default_rng(5))
    b = T.set_rewire(idx, values, (30, 30), 0.3, np.random.default_rng(5))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.source, b.source)


def test_take_with_source():
    out = T.take_with_source(
        np.array([1.0, 2.0, 3.0]), np.array([2, -1, 0, -1]), np.array([7.0, 8.0])
    )
    np.testing.assert_array_equal(out, [3.0, 7.0, 1.0, 8.0])


def test_neuron_degrees_match_dense_reference(rng):
    a = random_topology(rng, 20, 15, 90)
    b = random_topology(rng, 15, 6, 40)
    in_deg, out_deg = T.neuron_degrees(a, b, 15)
    dense_a = np.zeros((20, 15))
    dense_a[a[:, 0], a[:, 1]] = 1
    dense_b = np.zeros((15, 6))
    dense_b[b[:, 0], b[:, 1]] = 1
    np.testing.assert_array_equal(in_deg, dense_a.sum(0))
    np.testing.assert_array_equal(out_deg, dense_b.sum(1))


@pytest.mark.parametrize(
    "units,alpha,min_units,expected",
    [(7000, 0.04, 1, 280), (24, 0.04, 1, 0), (10, 0.5, 8, 2), (5, 0.0, 1, 0)],
)
def test_neurons_to_remove(units, alpha, min_units, expected):
    assert T.neurons_to_remove(units, alpha, min_units) == expected


@pytest.mark.parametrize("criterion", T.CRITERIA)
def test_select_neurons_keeps_the_best_connected(rng, criterion):
    in_deg = rng.integers(0, 20, 50)
    out_deg = rng.integers(0, 20, 50)
    keep = T.select_neurons(in_deg, out_deg, 12, rng, criterion)
    assert len(keep) == 38 and np.all(np.diff(keep) > 0)
    degree = {"total": in_deg + out_deg, "out": out_deg, "in": in_deg}[criterion]
    removed = np.setdiff1d(np.arange(50), keep)
    assert degree[removed].max() <= degree[keep].min()


def test_select_neurons_ties_are_seeded_and_random():
    deg = np.zeros(100, int)
    a = T.select_neurons(deg, deg, 50, np.random.default_rng(1))
    b = T.select_neurons(deg, deg, 50, np.random.default_rng(1))
    c = T.select_neurons(deg, deg, 50, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="criterion='degree'"):
        T.select_neurons(deg, deg, 1, np.random.default_rng(1), "degree")


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("tile", [None, 2, 4])
def test_keep_units_matches_dense_slicing(rng, monkeypatch, axis, tile):
    if tile is not None:  # dropped columns move across tile boundaries
        monkeypatch.setattr(T, "TILE_COLS", tile)
    shape = (12, 9)
    idx = random_topology(rng, *shape, 50)
    idx = idx[np.argsort(T.order_keys(idx, shape))]
    values = rng.standard_normal(50)
    keep = np.sort(rng.choice(shape[axis], 5, replace=False))
    r = T.keep_units(idx, shape, keep, axis)
    T.check_indices(r.indices, r.shape)
    dense = np.zeros(shape)
    dense[idx[:, 0], idx[:, 1]] = values
    expected = dense[keep] if axis == 0 else dense[:, keep]
    got = np.zeros(r.shape)
    got[r.indices[:, 0], r.indices[:, 1]] = values[r.source]
    np.testing.assert_array_equal(got, expected)
    assert r.shape[axis] == 5


def test_check_indices_rejects_bad_topologies():
    with pytest.raises(AssertionError):
        T.check_indices(np.array([[0, 1], [0, 1]], np.int64), (2, 2))
    with pytest.raises(AssertionError):
        T.check_indices(np.array([[1, 0], [0, 1]], np.int64), (2, 2))
    with pytest.raises(AssertionError):
        T.check_indices(np.array([[0, 2]], np.int64), (2, 2))


@pytest.mark.parametrize("tile", [None, 4])
def test_set_rewire_int32_indices_stay_int32_with_the_same_result(rng, monkeypatch, tile):
    if tile is not None:
        monkeypatch.setattr(T, "TILE_COLS", tile)
    shape = (40, 30)
    idx = T.erdos_renyi_indices(*shape, rng, epsilon=5)
    values = rng.standard_normal(len(idx))
    wide = T.set_rewire(idx, values, shape, 0.3, np.random.default_rng(7))
    narrow = T.set_rewire(idx.astype(np.int32), values, shape, 0.3, np.random.default_rng(7))
    assert wide.indices.dtype == np.int64 and narrow.indices.dtype == np.int32
    np.testing.assert_array_equal(narrow.indices, wide.indices)
    np.testing.assert_array_equal(narrow.source, wide.source)
    T.check_indices(narrow.indices, shape)
