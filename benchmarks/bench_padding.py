"""What padding costs a SparseDense step while neuron pruning empties its storage.

Neuron pruning keeps a layer's storage at its capacity during the pruning
phase (live connections first, then padding; `keras_npset.kernels`, "Padding")
so that events re-trace nothing. This times the three products of one
training step of one layer (forward, input gradient, values gradient; the XLA
programs `SparseDense` runs, called inside one `tf.function` as a Keras step
calls them) at several fills of the storage, three ways, interleaved round by
round in one process (medians):

- `padded`: the library's padded programs on the full storage (forward and
  input gradient loop over the live prefix, chunk by chunk);
- `compact`: the plain programs on the live connections alone (what the layer
  costs once compacted: the floor for the padded storage);
- `whole storage`: forward and input gradient over every stored entry, the
  padding dropped as segment -1 (the library's padded programs with
  `chunk=0`, what storage under `kernels.LOOP_MIN_CAPACITY` runs, and what
  every padded layer ran before the loop).

Default layer: Prostate_GE's first layer, 5966 x 5000 at epsilon 10, batch 2.

Usage:

    python -m benchmarks.bench_padding
    python -m benchmarks.bench_padding --fills 1 0.5 0.12 --rounds 9
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

WAYS = ("padded", "compact", "whole storage")


def step_programs(way: str, n_in: int, n_out: int, repeats: int):
    """A `tf.function(x, indices, values, dy)` running one step's products `repeats` times."""
    padded = way != "compact"
    # The library's programs either way: a loop over the live prefix, or
    # (chunk 0) one pass over the whole storage.
    chunk = kernels.CHUNK if way == "padded" else 0

    @tf.function
    def step(x, indices, values, dy):
        total = tf.constant(0.0)
        for _ in range(repeats):  # each step depends on the last, as in training
            y = kernels._gather_forward(x, indices, values, n_out, padded, chunk)
            dx = kernels._gather_input_grad(indices, values, dy, n_in, padded, chunk)
            dv = kernels._gather_values_grad(x, indices, dy, padded)
            total += y[0, 0] + dx[0, 0] + dv[0]
            x, dy = x + 0.0 * total, dy + 0.0 * total
        return total

    return step


def storage(indices, values, fill):
    """`((indices, values) padded, (indices, values) live prefix)` at `fill`."""
    live = int(round(len(indices) * fill))
    pad_idx = indices.copy()
    pad_idx[live:] = -1
    pad_val = values.copy()
    pad_val[live:] = 0
    return (tf.constant(pad_idx), tf.constant(pad_val)), (
        tf.constant(indices[:live]),
        tf.constant(values[:live]),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-in", type=int, default=5966)
    parser.add_argument("--n-out", type=int, default=5000)
    parser.add_argument("--epsilon", type=float, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--fills", nargs="+", type=float, default=[1.0, 0.5, 0.25, 0.12])
    parser.add_argument("--repeats", type=int, default=17, help="steps per call")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--output", default="bench_padding.json")
    args = parser.parse_args(argv)
    shape = (args.n_in, args.n_out)
    rng = np.random.default_rng(0)
    indices = topology.erdos_renyi_indices(*shape, rng, epsilon=args.epsilon).astype(np.int32)
    values = rng.standard_normal(len(indices)).astype(np.float32)
    x = tf.constant(rng.standard_normal((args.batch, shape[0])).astype(np.float32))
    dy = tf.constant(rng.standard_normal((args.batch, shape[1])).astype(np.float32))
    print(f"{shape[0]} x {shape[1]}, capacity {len(indices):,} connections", flush=True)
    programs = {way: step_programs(way, *shape, args.repeats) for way in WAYS}
    rows = []
    for fill in args.fills:
        padded, live = storage(indices, values, fill)
        inputs = {"padded": padded, "compact": live, "whole storage": padded}
        for way in WAYS:
            programs[way](x, *inputs[way], dy)  # compile
        times = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                start = time.perf_counter()
                programs[way](x, *inputs[way], dy).numpy()
                times[way].append((time.perf_counter() - start) / args.repeats)
        median = {way: float(np.median(t)) for way, t in times.items()}
        rows.append(
            {
                "fill": fill,
                "live": int(live[0].shape[0]),
                "step_s": median,
                "padded_over_compact": median["padded"] / median["compact"],
                "whole_over_padded": median["whole storage"] / median["padded"],
            }
        )
    head = ["fill", "live connections", *[f"{w} ms" for w in WAYS]]
    head += ["padded / compact", "whole / padded"]
    body = [
        [
            f"{r['fill']:.2f}",
            f"{r['live']:,}",
            *[f"{r['step_s'][w] * 1e3:.3f}" for w in WAYS],
            f"{r['padded_over_compact']:.2f}",
            f"{r['whole_over_padded']:.2f}",
        ]
        for r in rows
    ]
    print(common.markdown_table(head, body))
    print("wrote", common.write_results(args.output, args, rows, capacity=len(indices)))


if __name__ == "__main__":
    main()
