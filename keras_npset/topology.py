"""Topology math for sparse layers, as pure NumPy functions (no Keras).

A sparse kernel of dense shape `(n_in, n_out)` is described by `indices`, an
int64 (or, as `SparseDense` stores them, int32) array of shape `[nnz, 2]`
holding unique `(row, col)` pairs in *tile order*, and a parallel `values`
array of shape `[nnz]`. Every function here takes and returns arrays in that
form, so the math can be tested without building a model.

Tile order: the columns are cut into tiles of `TILE_COLS` consecutive columns;
connections are sorted by tile, then row-major within a tile. A kernel of at
most `TILE_COLS` columns, which includes every model of the NPSET paper, is
therefore in plain row-major order. For wider kernels the order keeps the
products' memory accesses local: in `x @ K` the outputs a run of connections
adds into span one tile (`TILE_COLS * batch` floats, which stays in the CPU's
L2 cache) while the inputs are read in ascending order, once per tile. On a
300,000 x 300,000 layer this makes the XLA gather path's forward and backward
products 1.7x faster than row-major order at a batch of 2 and 3.4x at a batch
of 32 (`benchmarks/bench_tiles.py`). `order_keys` maps
each position to its rank in this order, a bijection onto `[0, n_in * n_out)`,
so sampling uniform keys samples uniform positions.

References:
- Mocanu et al. 2018, "Scalable training of artificial neural networks with
  adaptive sparse connectivity inspired by network science" (SET).
- Liu, Mocanu & Pechenizkiy 2019, "On improving deep learning generalization
  with adaptive sparse connectivity" (NPSET).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_npset.validation import check_choice

CRITERIA = ("total", "out", "in")
# Columns per tile of the storage order (see the module docstring).
TILE_COLS = 16384


def flat_positions(indices: np.ndarray, n_out: int) -> np.ndarray:
    """Row-major flat positions `row * n_out + col` of `[nnz, 2]` indices."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1, 2)
    return indices[:, 0] * np.int64(n_out) + indices[:, 1]


def indices_from_flat(flat: np.ndarray, n_out: int) -> np.ndarray:
    """Inverse of `flat_positions`: `[nnz, 2]` int64 indices."""
    flat = np.asarray(flat, dtype=np.int64)
    out = np.empty((flat.size, 2), np.int64)
    np.divmod(flat, n_out, out=(out[:, 0], out[:, 1]))
    return out


def _tile(tile: int | None) -> int:
    return TILE_COLS if tile is None else int(tile)


def order_keys(indices: np.ndarray, shape: tuple[int, int], tile: int | None = None) -> np.ndarray:
    """Rank of each `(row, col)` in tile order among all `n_in * n_out` positions.

    For tile `t` (columns `start = t * tile` to `start + width - 1`), the key
    is `start * n_in + row * width + (col - start)`: tiles in order, row-major
    within a tile. `tile` defaults to `TILE_COLS`. Returns int64 keys.
    """
    n_in, n_out = shape
    tile = _tile(tile)
    indices = np.asarray(indices).reshape(-1, 2)
    # In place on two int64 copies: these run on tens of millions of entries.
    keys = indices[:, 0].astype(np.int64)
    cols = indices[:, 1].astype(np.int64)
    if n_out <= tile:
        keys *= n_out
        keys += cols
        return keys
    low = cols % tile
    start = cols
    start -= low
    last = (n_out - 1) // tile * tile
    keys *= tile
    if n_out - last != tile:  # the last tile is narrower
        in_last = np.flatnonzero(start == last)
        keys[in_last] //= tile
        keys[in_last] *= n_out - last
    keys += low
    start *= n_in
    keys += start
    return keys


def indices_from_keys(
    keys: np.ndarray, shape: tuple[int, int], tile: int | None = None
) -> np.ndarray:
    """Inverse of `order_keys`: `[nnz, 2]` int64 indices."""
    n_in, n_out = shape
    tile = _tile(tile)
    keys = np.asarray(keys, dtype=np.int64)
    if n_out <= tile:
        return indices_from_flat(keys, n_out)
    start = keys // (tile * n_in) * tile
    width = np.minimum(tile, n_out - start)
    rest = keys - start * n_in
    out = np.empty((keys.size, 2), np.int64)
    np.divmod(rest, width, out=(out[:, 0], out[:, 1]))
    out[:, 1] += start
    return out


def tile_order(indices: np.ndarray, shape: tuple[int, int], tile: int | None = None):
    """Permutation that puts unique `indices` into tile order (None if already)."""
    keys = order_keys(indices, shape, tile)
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return None
    return np.argsort(keys, kind="stable")


def unique_sorted(flat: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int64 array (sorts a copy, then drops repeats).

    NumPy 2's `np.unique` hashes int64 input and then sorts; that is about
    ten times slower than this on tens of millions of positions. (Here and
    below, `np.compress` and integer positions replace boolean-mask indexing,
    which this NumPy runs three to ten times slower.)
    """
    flat = np.sort(np.asarray(flat, dtype=np.int64))
    if flat.size == 0:
        return flat
    keep = np.empty(flat.size, dtype=bool)
    keep[0] = True
    np.not_equal(flat[1:], flat[:-1], out=keep[1:])
    return np.compress(keep, flat)


def target_nnz(
    n_in: int, n_out: int, epsilon: float | None = None, density: float | None = None
) -> int:
    """Number of random draws (epsilon) or exact connection count (density).

    At least 1 either way: a small `epsilon` on a small layer would otherwise
    draw nothing and leave a layer without connections.
    """
    if density is not None:
        return max(1, int(round(density * n_in * n_out)))
    return max(1, int(epsilon * (n_in + n_out)))


def erdos_renyi_indices(
    n_in: int,
    n_out: int,
    rng: np.random.Generator,
    epsilon: float | None = 10.0,
    density: float | None = None,
) -> np.ndarray:
    """Random Erdos-Renyi topology of a `(n_in, n_out)` kernel.

    With `epsilon`, draws `epsilon * (n_in + n_out)` random `(row, col)` pairs
    *with* replacement and lets duplicates collapse, exactly as the original
    SET code does; this reproduces the parameter counts of the NPSET paper's
    Table 3 (for small layers the result is therefore a little below the
    target density `epsilon * (n_in + n_out) / (n_in * n_out)`, and a layer
    whose target density is 1 or more comes out (nearly) dense).
    With `density`, exactly `round(density * n_in * n_out)` distinct
    positions are chosen uniformly (at least one).

    Returns:
        int64 array `[nnz, 2]`, unique and in tile order.
    """
    total = n_in * n_out
    if density is not None:
        count = min(total, target_nnz(n_in, n_out, density=density))
        keys = sample_free_positions(np.empty(0, np.int64), total, count, rng)
        return indices_from_keys(keys, (n_in, n_out))
    draws = target_nnz(n_in, n_out, epsilon=epsilon)
    drawn = np.empty((draws, 2), np.int64)
    drawn[:, 0] = rng.integers(0, n_in, size=draws, dtype=np.int64)
    drawn[:, 1] = rng.integers(0, n_out, size=draws, dtype=np.int64)
    keys = order_keys(drawn, (n_in, n_out))
    del drawn
    return indices_from_keys(unique_sorted(keys), (n_in, n_out))


def sample_free_positions(
    occupied_flat: np.ndarray, total: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` distinct flat positions in `[0, total)` outside `occupied_flat`.

    Uniform over the free positions. `occupied_flat` must be sorted and
    unique. Rejection sampling keeps memory proportional to `nnz`; when few
    positions are free (over three quarters occupied) or most free positions
    are wanted (rejection would become a coupon collector), the free set is
    enumerated instead, which then costs `O(total) = O(nnz + count)` as well.

    Returns:
        int64 array of `count` distinct positions, sorted.

    Raises:
        ValueError: if fewer than `count` positions are free.
    """
    occupied_flat = np.asarray(occupied_flat, dtype=np.int64)
    free = total - occupied_flat.size
    if count > free:
        raise ValueError(
            f"Cannot place {count} new connections: only {free} of {total} positions are free."
        )
    if count == 0:
        return np.empty(0, np.int64)
    if free * 4 < total or count * 2 > free:
        mask = np.ones(total, dtype=bool)
        mask[occupied_flat] = False
        free_flat = np.flatnonzero(mask)
        return np.sort(rng.choice(free_flat, size=count, replace=False)).astype(np.int64)
    chosen = np.empty(0, np.int64)
    while chosen.size < count:
        need = count - chosen.size
        # Oversample by the expected rejection rate plus a margin.
        draw = int(need * total / free * 1.1) + 16
        # Sorted queries keep the binary searches cache-friendly.
        cand = unique_sorted(rng.integers(0, total, size=draw, dtype=np.int64))
        cand = np.compress(~_isin_sorted(cand, occupied_flat), cand)
        # Distinct uniform draws form a uniform random subset of the free set.
        chosen = cand if chosen.size == 0 else unique_sorted(np.concatenate([chosen, cand]))
    if chosen.size > count:
        # A uniform random subset of a uniform random subset is uniform.
        drop = rng.choice(chosen.size, size=chosen.size - count, replace=False)
        chosen = np.delete(chosen, drop)
    return chosen


def _isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    pos = np.minimum(pos, sorted_set.size - 1)
    return sorted_set[pos] == values


def set_removal_mask(values: np.ndarray, zeta: float) -> np.ndarray:
    """Connections removed by one SET step (True = remove).

    Removes `int(zeta * n_pos)` of the smallest positive values, `int(zeta *
    n_neg)` of the largest (closest to zero) negative values, and every value
    that is exactly zero (it sits between the two thresholds, as in the
    original SET code).
    """
    values = np.asarray(values)
    remove = values == 0
    for side in (np.flatnonzero(values > 0), np.flatnonzero(values < 0)):
        k = int(zeta * side.size)
        if k == 0:
            continue
        magnitude = np.abs(values[side])
        if k < side.size:
            chosen = side[np.argpartition(magnitude, k - 1)[:k]]
        else:
            chosen = side
        remove[chosen] = True
    return remove


@dataclasses.dataclass(frozen=True)
class Rewiring:
    """Result of a topology change of one kernel.

    Attributes:
        indices: new `[nnz, 2]` indices, unique and in tile order (int32
            if the old ones were int32, else int64).
        source: for each new connection, the position of the same connection
            in the old arrays, or -1 for a newly created one. Values and
            optimizer slots are carried with `take_with_source`.
        shape: new dense shape `(n_in, n_out)`.
    """

    indices: np.ndarray
    source: np.ndarray
    shape: tuple[int, int]

    @property
    def new_mask(self) -> np.ndarray:
        return self.source < 0


def take_with_source(
    old: np.ndarray, source: np.ndarray, fill: np.ndarray | float = 0.0
) -> np.ndarray:
    """Carry per-connection state: `old[source]`, `fill` where source is -1."""
    old = np.asarray(old)
    out = np.take(old, np.maximum(source, 0), axis=0)  # a new array
    new = np.flatnonzero(source < 0)
    if new.size:
        out[new] = fill if np.ndim(fill) == 0 else np.asarray(fill)
    return out


@dataclasses.dataclass(frozen=True)
class SetPlan:
    """The deterministic first half of a SET step (`plan_set`), before regrowth.

    Attributes:
        indices: the layer's indices as given (int32 stays int32).
        shape: dense shape `(n_in, n_out)`.
        keep: which connections survive, or None when the step changes
            nothing (a fully dense kernel, `zeta` 0, nothing to remove).
        kept_keys: `order_keys` of the survivors, sorted.
    """

    indices: np.ndarray
    shape: tuple[int, int]
    keep: np.ndarray | None = None
    kept_keys: np.ndarray | None = None

    @property
    def n_new(self) -> int:
        """How many connections the step regrows."""
        return 0 if self.keep is None else int(self.keep.size - self.kept_keys.size)

    def identity(self) -> Rewiring:
        nnz = self.indices.shape[0]
        return Rewiring(self.indices, np.arange(nnz, dtype=np.int64), self.shape)


def plan_set(indices: np.ndarray, values: np.ndarray, shape: tuple[int, int], zeta: float):
    """What one SET step removes (`set_removal_mask`), and the survivors' keys.

    Uses no randomness, so plans of several layers can be made in parallel
    while their regrowth (`sample_free_positions`) stays in order.
    """
    n_in, n_out = shape
    indices = np.asarray(indices).reshape(-1, 2)
    if indices.dtype != np.int32:
        indices = indices.astype(np.int64, copy=False)
    shape = (int(n_in), int(n_out))
    if indices.shape[0] >= n_in * n_out or zeta == 0:
        return SetPlan(indices, shape)
    remove = set_removal_mask(values, zeta)
    if not remove.any():
        return SetPlan(indices, shape)
    keep = ~remove
    kept = np.compress(keep, _records(indices))
    kept_keys = order_keys(_pairs(kept, indices.dtype), shape)  # sorted, as indices are
    return SetPlan(indices, shape, keep, kept_keys)


def finish_set(plan: SetPlan, new_keys: np.ndarray) -> Rewiring:
    """The second half of a SET step: merge the regrown `new_keys` (sorted).

    Both the survivors' keys and `new_keys` are sorted, and disjoint. NumPy's
    stable sort of int64 is a timsort, which finds the two sorted runs of
    their concatenation and merges them in linear time: about half the time
    of placing the new keys with `searchsorted` and boolean-mask scatters.
    """
    if plan.keep is None:
        return plan.identity()
    indices = plan.indices
    # Each temporary is dropped as soon as it is used, which keeps the peak
    # near 32 bytes per connection (measured with tracemalloc).
    keys = np.concatenate([plan.kept_keys, new_keys])
    order = np.argsort(keys, kind="stable")
    del keys
    kept = np.flatnonzero(plan.keep)
    new_records = _records(indices_from_keys(new_keys, plan.shape).astype(indices.dtype))
    records = np.concatenate([_records(indices).take(kept), new_records])
    del new_records
    records = records.take(order)
    source = np.concatenate([kept, np.full(new_keys.size, -1, np.int64)])
    del kept
    return Rewiring(_pairs(records, indices.dtype), source.take(order), plan.shape)


def set_rewire(
    indices: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    zeta: float,
    rng: np.random.Generator,
) -> Rewiring:
    """One SET step: remove by `set_removal_mask`, regrow as many at random.

    New connections go to positions drawn uniformly among those not kept
    (a position just removed may be drawn again, as in the original code), so
    nnz is unchanged. A fully dense kernel has no free position to explore:
    it is returned unchanged rather than having its smallest weights
    re-initialised in place. The same as `plan_set`, then
    `sample_free_positions`, then `finish_set`.
    """
    plan = plan_set(indices, values, shape, zeta)
    if plan.n_new == 0:
        return plan.identity()
    n_in, n_out = plan.shape
    new_keys = sample_free_positions(plan.kept_keys, n_in * n_out, plan.n_new, rng)
    return finish_set(plan, new_keys)


def _records(indices: np.ndarray) -> np.ndarray:
    """`[nnz, 2]` int32 indices as one int64 word per connection (a view).

    Moving and compressing whole words is several times faster than moving
    `(row, col)` pairs; int64 indices are stored as a `[nnz]` array of
    16-byte void records instead.
    """
    indices = np.ascontiguousarray(indices)
    if indices.dtype == np.int32:
        return indices.view(np.int64).reshape(-1)
    return indices.view(np.dtype((np.void, 16))).reshape(-1)


def _pairs(records: np.ndarray, dtype) -> np.ndarray:
    """Inverse of `_records`."""
    return records.view(dtype).reshape(-1, 2)


def neuron_degrees(
    in_indices: np.ndarray, out_indices: np.ndarray, units: int
) -> tuple[np.ndarray, np.ndarray]:
    """In- and out-degree of the `units` neurons between two sparse kernels.

    `in_indices` are the indices of the kernel feeding the neurons (they are
    its columns); `out_indices` those of the kernel they feed (its rows).
    """
    in_idx = np.asarray(in_indices, np.int64).reshape(-1, 2)
    out_idx = np.asarray(out_indices, np.int64).reshape(-1, 2)
    in_deg = np.bincount(in_idx[:, 1], minlength=units)[:units]
    out_deg = np.bincount(out_idx[:, 0], minlength=units)[:units]
    return in_deg, out_deg


def neurons_to_remove(units: int, alpha: float, min_units: int = 1) -> int:
    """`floor(alpha * units)`, limited so that at least `min_units` remain."""
    return max(0, min(int(np.floor(alpha * units)), units - min_units))


def select_neurons(
    in_degree: np.ndarray,
    out_degree: np.ndarray,
    n_remove: int,
    rng: np.random.Generator,
    criterion: str = "out",
) -> np.ndarray:
    """Sorted indices of the neurons to *keep* after removing `n_remove`.

    The removed neurons are those with the fewest connections under
    `criterion` ("out" = out-degree, the paper's, "total" = in + out degree, or
    "in"); ties are broken
    by a random permutation drawn from `rng`, so they are reproducible.
    """
    check_choice("criterion", criterion, CRITERIA)
    in_degree = np.asarray(in_degree, np.int64)
    out_degree = np.asarray(out_degree, np.int64)
    degree = {"total": in_degree + out_degree, "out": out_degree, "in": in_degree}[criterion]
    units = degree.size
    if n_remove <= 0:
        return np.arange(units, dtype=np.int64)
    tiebreak = rng.permutation(units)
    order = np.lexsort((tiebreak, degree))  # ascending degree, then random
    return np.sort(order[n_remove:]).astype(np.int64)


def keep_units(
    indices: np.ndarray, shape: tuple[int, int], keep: np.ndarray, axis: int
) -> Rewiring:
    """Drop every unit not in `keep` along `axis` (0 = rows/inputs, 1 = cols/outputs).

    Connections touching a dropped unit are removed and the kept units are
    renumbered `0..len(keep)-1` in their original order. That preserves
    row-major order within each tile; dropping columns of a kernel wider than
    a tile moves columns across tile boundaries, and the survivors are then
    re-sorted into tile order (`source` follows them).
    """
    indices = np.asarray(indices, np.int64).reshape(-1, 2)
    keep = np.asarray(keep, np.int64)
    size = shape[axis]
    new_id = np.full(size, -1, np.int64)
    new_id[keep] = np.arange(keep.size, dtype=np.int64)
    mapped = np.take(new_id, indices[:, axis])
    survivors = np.flatnonzero(mapped >= 0).astype(np.int64)
    # `np.take` rather than fancy indexing: ten times faster on [n, 2] rows.
    new_indices = np.take(indices, survivors, axis=0)
    new_indices[:, axis] = np.take(mapped, survivors)
    new_shape = list(shape)
    new_shape[axis] = int(keep.size)
    new_shape = tuple(new_shape)
    # Within one tile (row-major) the renumbering keeps the order.
    order = tile_order(new_indices, new_shape) if axis == 1 and shape[1] > TILE_COLS else None
    if order is not None:
        new_indices, survivors = new_indices[order], survivors[order]
    return Rewiring(new_indices, survivors, new_shape)


def check_indices(indices: np.ndarray, shape: tuple[int, int]) -> None:
    """Raise `AssertionError` unless indices are unique, in tile order and in range."""
    indices = np.asarray(indices)
    assert indices.ndim == 2 and indices.shape[1] == 2, indices.shape
    assert indices.dtype in (np.int32, np.int64), indices.dtype
    if indices.shape[0] == 0:
        return
    assert indices.min() >= 0, "negative index"
    assert np.all(indices[:, 0] < shape[0]) and np.all(indices[:, 1] < shape[1]), "out of range"
    keys = order_keys(indices, shape)
    assert np.all(np.diff(keys) > 0), "not unique and in tile order"
