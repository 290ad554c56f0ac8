"""Storage order and index width of the XLA gather path on one very wide layer.

Times the three products of a training step of one SparseDense kernel (the
forward `x @ K`, the input gradient `dy @ K^T` and the values gradient) as the
XLA programs `SparseDense` uses (`keras_npset.kernels`), with the same
connections stored four ways:

- `row-major int64`: plain row-major order, int64 indices (the layout before
  tile order and int32 storage);
- `row-major int32`;
- `tiles int32` (the library's layout): tile order (`keras_npset.topology`,
  `TILE_COLS` columns per tile; `--tiles` adds other tile widths);

interleaved round by round in one process, as medians, against the floor of
the three products, `max(6 * nnz * batch / P, bytes / BW)` with `bytes` =
every connection's indices, value and value gradient touched once
(`(2 * index bytes + 8) * nnz`) and `P`, `BW` measured in the same process
(as in `bench_step.py`). The default layer is one hidden
layer of `bench_scale.py`'s 903,317-neuron model: 300,000 x 300,000, epsilon
20 (12 million connections).

Usage:

    python -m benchmarks.bench_tiles
    python -m benchmarks.bench_tiles --batches 2 32 --tiles 4096 16384 65536
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from keras_npset import kernels, topology  # noqa: E402

PRODUCTS = ("forward", "input grad", "values grad")


def layouts(indices, shape, tiles):
    """`{name: (indices, permutation)}`: each storage of the same connections."""
    row_major = np.argsort(topology.flat_positions(indices, shape[1]), kind="stable")
    out = {
        "row-major int64": (indices[row_major], row_major),
        "row-major int32": (indices[row_major].astype(np.int32), row_major),
    }
    for tile in tiles:
        order = np.argsort(topology.order_keys(indices, shape, tile), kind="stable")
        out[f"tiles {tile} int32"] = (indices[order].astype(np.int32), order)
    return out


def products(indices, values, x, dy, n_in, n_out):
    """Zero-argument callables, one per product, each blocking until done."""
    idx = tf.constant(indices)
    return {
        "forward": lambda: kernels._gather_forward(x, idx, values, n_out).numpy(),
        "input grad": lambda: kernels._gather_input_grad(idx, values, dy, n_in).numpy(),
        "values grad": lambda: kernels._gather_values_grad(x, idx, dy).numpy(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-in", type=int, default=300_000)
    parser.add_argument("--n-out", type=int, default=300_000)
    parser.add_argument("--epsilon", type=float, default=20)
    parser.add_argument("--batches", nargs="+", type=int, default=[2, 32])
    parser.add_argument("--tiles", nargs="+", type=int, default=[topology.TILE_COLS])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", default="bench_tiles.json")
    args = parser.parse_args(argv)
    shape = (args.n_in, args.n_out)
    rng = np.random.default_rng(0)
    indices = topology.erdos_renyi_indices(*shape, rng, epsilon=args.epsilon)
    nnz = len(indices)
    values_np = rng.standard_normal(nnz).astype(np.float32)
    flops, bandwidth = common.machine_peaks()
    print(
        f"{shape[0]} x {shape[1]}, nnz {nnz:,}, P = {flops / 1e9:.0f} GFLOP/s, "
        f"BW = {bandwidth / 1e9:.1f} GB/s",
        flush=True,
    )
    rows = []
    for batch in args.batches:
        x = tf.constant(rng.standard_normal((batch, shape[0])).astype(np.float32))
        dy = tf.constant(rng.standard_normal((batch, shape[1])).astype(np.float32))
        cases = {}
        for name, (idx, order) in layouts(indices, shape, args.tiles).items():
            fns = products(idx, tf.constant(values_np[order]), x, dy, *shape)
            for fn in fns.values():
                fn()  # compile
            cases[name] = (fns, idx.dtype.itemsize)
        times = {name: {p: [] for p in PRODUCTS} for name in cases}
        for _ in range(args.rounds):
            for name, (fns, _) in cases.items():
                for product, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name][product].append(time.perf_counter() - start)
        base = None
        for name, (_, itemsize) in cases.items():
            median = {p: float(np.median(t)) for p, t in times[name].items()}
            total = sum(median.values())
            base = base or total
            floor = max(6 * nnz * batch / flops, (2 * itemsize + 8) * nnz / bandwidth)
            rows.append(
                {
                    "batch": batch,
                    "layout": name,
                    "median_s": median,
                    "total_s": total,
                    "speedup_vs_first": base / total,
                    "floor_s": floor,
                }
            )
    head = ["batch", "layout", "forward ms", "input grad ms", "values grad ms", "total ms"]
    head += ["speed-up vs row-major int64", "floor ms", "floor / total"]
    body = [
        [
            str(r["batch"]),
            r["layout"],
            *[f"{r['median_s'][p] * 1e3:.1f}" for p in ("forward", "input grad", "values grad")],
            f"{r['total_s'] * 1e3:.1f}",
            f"{r['speedup_vs_first']:.2f}x",
            f"{r['floor_s'] * 1e3:.2f}",
            f"{r['floor_s'] / r['total_s']:.0%}",
        ]
        for r in rows
    ]
    print(common.markdown_table(head, body))
    fields = {"shape": list(shape), "nnz": nnz, "peak_flops": flops, "bandwidth": bandwidth}
    print("wrote", common.write_results(args.output, args, rows, **fields))


if __name__ == "__main__":
    main()
