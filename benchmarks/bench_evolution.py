"""SET evolution on one thread against two: where `PARALLEL_EVOLUTION_MIN_NNZ` belongs.

For each MLP, builds the model with SGD-with-momentum slots and times
`SETEvolution.evolve()` (all layers, optimizer slots included) with the
two-thread path forced on and forced off, interleaved round by round in one
process (median over rounds). The crossover is the smallest model the second
thread speeds up; `keras_npset.callbacks.PARALLEL_EVOLUTION_MIN_NNZ` is set
above it.

Usage:

    python -m benchmarks.bench_evolution
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from keras_npset import SETEvolution  # noqa: E402
from keras_npset import callbacks as callbacks_module  # noqa: E402

# (widths, epsilon): madelon, NPSET's pruned Leukemia (two sizes), Leukemia, Leukemia at epsilon 20.
MODELS = [
    ([500, 1000, 1000, 2], 10),
    ([7070, 1320, 1320, 2], 3.5),
    ([7070, 1320, 1320, 2], 10),
    ([7070, 7000, 7000, 2], 10),
    ([7070, 7000, 7000, 2], 20),
]
MODES = {"one thread": 2**62, "two threads": 0}  # the threshold that forces each path


def measure(widths, epsilon, rounds):
    keras.utils.set_random_seed(0)
    model = common.compile_sgd(common.mlp(widths, epsilon=epsilon))
    rng = np.random.default_rng(0)
    x = rng.random((4, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], 4)
    evolution = SETEvolution(zeta=0.3, seed=0)
    # Two epochs: builds the momentum slots and evolves once through `fit`.
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[evolution])
    saved = callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ
    times = {mode: [] for mode in MODES}
    try:
        for _ in range(rounds):
            for mode, threshold in MODES.items():
                callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ = threshold
                start = time.perf_counter()
                evolution.evolve()
                times[mode].append(time.perf_counter() - start)
    finally:
        callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ = saved
    median = {mode: float(np.median(t)) for mode, t in times.items()}
    return {
        "widths": widths,
        "epsilon": epsilon,
        "nnz": common.nnz(model),
        "rounds": rounds,
        "median_s": median,
        "speedup": median["one thread"] / median["two threads"],
    }


def table(rows):
    head = ["widths", "eps", "nnz", "one thread ms", "two threads ms", "speed-up"]
    cells = [
        [
            "-".join(map(str, row["widths"])),
            f"{row['epsilon']:g}",
            f"{row['nnz']:,}",
            f"{row['median_s']['one thread'] * 1e3:.1f}",
            f"{row['median_s']['two threads'] * 1e3:.1f}",
            f"{row['speedup']:.2f}x",
        ]
        for row in rows
    ]
    return common.markdown_table(head, cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--widths", nargs="+", type=int, default=None, help="one custom MLP instead of MODELS"
    )
    parser.add_argument("--epsilon", type=float, default=10)
    parser.add_argument("--output", default="bench_evolution.json")
    args = parser.parse_args(argv)
    models = [(args.widths, args.epsilon)] if args.widths else MODELS
    rows = []
    for widths, epsilon in models:
        rows.append(measure(widths, epsilon, args.rounds))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    print(f"threshold now: {callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ:,} connections")
    print("wrote", common.write_results(args.output, args, rows))


if __name__ == "__main__":
    main()
