"""Where a SparseDense training step goes: forward, backward, optimizer, fixed cost.

For each shape, times in one process, interleaved round by round (median over
rounds):

- `fit step`: `model.train_on_batch` (what `fit` runs per step, with Keras's
  per-step work);
- `forward`: the model's forward pass in a `tf.function`;
- `forward + backward`: the gradients of the loss with respect to every
  trainable variable, in a `tf.function`;
- `optimizer`: the SGD-with-momentum update of all variables from fixed
  gradients, in a `tf.function`;
- `fixed cost`: `train_on_batch` of a tiny SparseDense MLP (8-8-8-2), the cost
  of a step that does no arithmetic to speak of;

against the floor of `bench_step.py` (`max(6 * nnz * batch / P, bytes / BW)`,
with `P` and `BW` measured in the same process). The gap between the fit step
and the floor is what a faster kernel could still win; the fixed cost is what
it cannot.

Usage:

    python -m benchmarks.bench_breakdown                      # Leukemia and madelon, batch 2
    python -m benchmarks.bench_breakdown --widths 3312 300000 300000 300000 5 --epsilon 20
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.bench_step import SHAPES, floor_seconds  # noqa: E402

PHASES = ("fit step", "forward", "forward + backward", "optimizer", "fixed cost")


def _phases(model, tiny, x, y, tiny_x, tiny_y):
    """Zero-argument callables, one per phase, each blocking until done."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables

    @tf.function
    def forward(x):
        return model(x, training=True)

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, variables)

    grads = gradients(x, y)

    @tf.function
    def update(grads):
        model.optimizer.apply(grads, variables)

    def block(tensors):
        for t in tf.nest.flatten(tensors):
            if t is not None:
                t.numpy()

    return {
        "fit step": lambda: model.train_on_batch(x, y),
        "forward": lambda: block(forward(x)),
        "forward + backward": lambda: block(gradients(x, y)),
        "optimizer": lambda: (update(grads), block(variables[0].value)),
        "fixed cost": lambda: tiny.train_on_batch(tiny_x, tiny_y),
    }


def measure(widths, epsilon, batch, rounds, flops, bandwidth):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, widths[0]), dtype=np.float32))
    y = tf.constant(rng.integers(0, widths[-1], batch))
    model = common.compile_sgd(common.mlp(widths, epsilon=epsilon))
    tiny_widths = [8, 8, 8, 2]
    tiny = common.compile_sgd(common.mlp(tiny_widths, epsilon=epsilon))
    tiny_x = tf.constant(rng.random((batch, tiny_widths[0]), dtype=np.float32))
    tiny_y = tf.constant(rng.integers(0, tiny_widths[-1], batch))
    model.train_on_batch(x, y)  # builds the optimizer
    tiny.train_on_batch(tiny_x, tiny_y)
    phases = _phases(model, tiny, x, y, tiny_x, tiny_y)
    for run in phases.values():  # warm-up: trace and compile
        run()
        run()
    times = {name: [] for name in phases}
    for _ in range(rounds):
        for name, run in phases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    nnz = common.nnz(model)
    floor, _, _ = floor_seconds(widths, nnz, batch, flops, bandwidth)
    return {
        "widths": widths,
        "epsilon": epsilon,
        "batch": batch,
        "nnz": nnz,
        "rounds": rounds,
        "median_s": {name: float(np.median(t)) for name, t in times.items()},
        "floor_s": floor,
    }


def table(rows):
    """Markdown: ms per phase and the fit step's efficiency against the floor."""
    head = ["widths", "eps", "batch", "nnz", *[f"{p} ms" for p in PHASES]]
    head += ["floor ms", "floor / fit step"]
    body = []
    for row in rows:
        med = row["median_s"]
        cells = ["-".join(str(w) for w in row["widths"]), f"{row['epsilon']:g}", str(row["batch"])]
        cells.append(str(row["nnz"]))
        cells += [f"{med[p] * 1e3:.2f}" for p in PHASES]
        cells += [f"{row['floor_s'] * 1e3:.3f}", f"{row['floor_s'] / med['fit step']:.0%}"]
        body.append(cells)
    return common.markdown_table(head, body)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument(
        "--widths", nargs="+", type=int, default=None, help="one custom shape instead of --shapes"
    )
    parser.add_argument("--epsilon", type=float, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--output", default="bench_breakdown.json")
    args = parser.parse_args(argv)
    shapes = [args.widths] if args.widths else [SHAPES[name] for name in args.shapes]
    flops, bandwidth = common.machine_peaks()
    print(f"P = {flops / 1e9:.0f} GFLOP/s, BW = {bandwidth / 1e9:.1f} GB/s", flush=True)
    rows = []
    for widths in shapes:
        keras.utils.set_random_seed(0)
        rows.append(measure(widths, args.epsilon, args.batch, args.rounds, flops, bandwidth))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    path = common.write_results(args.output, args, rows, peak_flops=flops, bandwidth=bandwidth)
    print("wrote", path)


if __name__ == "__main__":
    main()
