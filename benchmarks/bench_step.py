"""Training-step time of SparseDense MLPs against dense Keras and the memory floor.

For each shape, epsilon and batch size, times `model.fit` steps (forward,
backward, SGD with momentum 0.9) of the SparseDense MLP with each kernel path
and of a dense Keras MLP of the same widths, interleaved in one process: every
round runs a short `fit` of each model in turn. A step's time is the gap
between consecutive `on_train_batch_end` calls divided by
`steps_per_execution` (so the fit loop's per-step Python work is included);
the reported figure is the median of all such gaps after a warm-up `fit`.

The floor is `T_min = max(F / P, bytes / BW)` with `F = 6 * nnz * batch`
(forward, input gradient, value gradient) and `bytes` = every array of the
step touched once: int32 indices (8 B per connection), values, their gradient
and momentum read and written (24 B), and each layer's activations written
forward and read and written backward (`3 * 4 * batch * sum(widths)` B). `P`
is the FLOP/s of a 2048^3 float32 matmul and `BW` the bytes/s of a 256 MiB
copy, both measured at the start of the run.

Usage:

    python -m benchmarks.bench_step            # full run (~10 min, 2 cores)
    python -m benchmarks.bench_step --quick    # Leukemia, epsilon 10, batch 2 and 32
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

SHAPES = {"leukemia": [7070, 7000, 7000, 2], "madelon": [500, 1000, 1000, 2]}
IMPLS = ("auto", "gather", "csr", "sparse_dense_matmul")


class _StepTimer(keras.callbacks.Callback):
    def __init__(self, spe):
        super().__init__()
        self.spe = spe
        self.gaps = []
        self._last = None

    def on_train_begin(self, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) / self.spe)
        self._last = now


def floor_seconds(widths, nnz, batch, flops, bandwidth):
    work = 6.0 * nnz * batch
    traffic = nnz * (8 + 24) + 3 * 4 * batch * sum(widths)
    return max(work / flops, traffic / bandwidth), work, traffic


def time_models(models, widths, batch, spe, steps, rounds):
    """Median step time (s) of each model, interleaved round by round."""
    per_fit = 6 * spe  # six executions per fit call -> five gaps
    rng = np.random.default_rng(0)
    x = rng.random((batch * per_fit, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], batch * per_fit)
    timers = {name: _StepTimer(spe) for name in models}
    for model in models.values():  # warm-up: trace, compile, first steps
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    rounds = max(rounds, -(-steps // 5))
    for _ in range(rounds):
        for name, model in models.items():
            model.fit(
                x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timers[name]]
            )
    return {name: float(np.median(t.gaps)) for name, t in timers.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="Leukemia shape, epsilon 10, batch 2 and 32 only."
    )
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--epsilons", nargs="+", type=float, default=[10, 20])
    parser.add_argument("--batches", nargs="+", type=int, default=[2, 16, 31, 32, 128])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--steps", type=int, default=25, help="Timed steps per model (>= 20).")
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="Keras compile(steps_per_execution=...). Defaults to 1.",
    )
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=["auto", "true"],
        help="Keras compile(jit_compile=...) for every model. 'true' only "
        "takes effect for XLA-compatible paths (gather, dense).",
    )
    parser.add_argument("--output", default=None, help="File name under benchmarks/results/.")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.epsilons, args.batches = ["leukemia"], [10], [2, 32]
    args.steps = max(args.steps, 20)
    jit = True if args.jit_compile == "true" else "auto"
    spe = args.steps_per_execution

    flops, bandwidth = common.machine_peaks()
    print(
        f"P = {flops / 1e9:.1f} GFLOP/s (2048^3 matmul), BW = {bandwidth / 1e9:.1f} GB/s "
        f"(256 MiB copy); steps_per_execution={spe}, jit_compile={args.jit_compile}",
        flush=True,
    )
    rows = []
    for shape in args.shapes:
        widths = SHAPES[shape]
        for batch in args.batches:
            dense = common.compile_sgd(common.mlp(widths, sparse=False), spe, jit)
            dense_time = None
            for epsilon in args.epsilons:
                models = {
                    impl: common.compile_sgd(
                        common.mlp(widths, epsilon=epsilon, kernel_impl=impl), spe, jit
                    )
                    for impl in args.impls
                }
                n = common.nnz(models[args.impls[0]])
                if dense_time is None:
                    models["dense"] = dense
                times = time_models(models, widths, batch, spe, args.steps, rounds=4)
                dense_time = times.pop("dense", dense_time)
                floor, work, traffic = floor_seconds(widths, n, batch, flops, bandwidth)
                row = {
                    "shape": shape,
                    "widths": widths,
                    "epsilon": epsilon,
                    "batch": batch,
                    "nnz": n,
                    "dense_s": dense_time,
                    "sparse_s": times,
                    "floor_s": floor,
                    "flops": work,
                    "bytes": traffic,
                }
                rows.append(row)
                print(_format_row(row, args.impls), flush=True)
                del models
            del dense
    payload = {
        "args": vars(args),
        "P_flops": flops,
        "BW_bytes": bandwidth,
        "machine": common.machine(),
        "rows": rows,
    }
    name = args.output or ("bench_step_quick.json" if args.quick else "bench_step.json")
    print("\n" + table(rows, args.impls))
    print("wrote", common.write_json(name, payload))


def _format_row(row, impls):
    parts = " ".join(f"{impl}={row['sparse_s'][impl] * 1e3:.2f}" for impl in impls)
    return (
        f"{row['shape']} eps={row['epsilon']:g} batch={row['batch']} nnz={row['nnz']}: "
        f"dense={row['dense_s'] * 1e3:.2f} {parts} floor={row['floor_s'] * 1e3:.3f} ms"
    )


def table(rows, impls):
    """Markdown table: ms per step, speed-up over dense, efficiency against the floor."""
    head = ["shape", "eps", "batch", "nnz", "dense ms"]
    head += [f"{impl} ms" for impl in impls]
    head += ["floor ms", "dense / auto", "dense / best", "floor / auto"]
    body = []
    for row in rows:
        sparse = row["sparse_s"]
        auto = sparse.get("auto", min(sparse.values()))
        best = min(sparse.values())
        cells = [
            row["shape"],
            f"{row['epsilon']:g}",
            str(row["batch"]),
            str(row["nnz"]),
            f"{row['dense_s'] * 1e3:.1f}",
        ]
        cells += [f"{sparse[impl] * 1e3:.2f}" for impl in impls]
        cells += [
            f"{row['floor_s'] * 1e3:.3f}",
            f"{row['dense_s'] / auto:.1f}x",
            f"{row['dense_s'] / best:.1f}x",
            f"{row['floor_s'] / auto:.0%}",
        ]
        body.append(cells)
    return common.markdown_table(head, body)


if __name__ == "__main__":
    main()
