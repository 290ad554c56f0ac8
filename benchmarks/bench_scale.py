"""One epoch of the original SET code's large model, at about 1M and 1.8M neurons.

A lung-shaped problem (3312 inputs, 135 training samples, 5 classes; synthetic
data of that shape) and an MLP with three hidden layers of `--hidden` neurons
each (300,000 -> 903,317 neurons counting inputs and outputs; 600,000 ->
1,803,317), epsilon 20, batch 2, SGD with momentum, `SETEvolution(zeta=0.3)`.
Runs two epochs with `model.fit` and reports the second one: its training
time, and the time of the SET evolution at the end of the first (Keras's
`fit` evolves after every epoch but the last), with the peak resident memory
against an estimate from nnz alone (no term grows with `n_in * n_out`).
It also reports the median step and the sum of the step times: on a shared
machine the epoch's wall time can include stalls of tens of seconds that are
not spent in the steps.

Usage:

    python -m benchmarks.bench_scale                   # 300,000 per layer
    python -m benchmarks.bench_scale --hidden 600000   # 600,000 per layer
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


class TimedSET(SETEvolution):
    """`SETEvolution` that records how long each evolution takes."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.seconds = []

    def evolve(self):
        start = time.perf_counter()
        super().evolve()
        self.seconds.append(time.perf_counter() - start)


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training (callbacks at epoch end excluded)."""

    def on_train_begin(self, logs=None):
        self.seconds, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self.steps.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()
        self.steps[-1].append(self._last - self._batch_start)

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self._last - self._start)


def nnz_bytes(nnz, widths, batch):
    """Memory the model needs by nnz: int32 indices, values, momentum, gradient,
    evolution temporaries (about 8 more 8-byte arrays per connection), activations."""
    return nnz * (8 + 4 + 4 + 4) + nnz * 8 * 8 + 4 * batch * sum(widths) * 4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=300_000)
    parser.add_argument("--epsilon", type=float, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--kernel-impl", default="auto")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true"])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    widths = [3312, args.hidden, args.hidden, args.hidden, 5]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((135, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], 135)
    keras.utils.set_random_seed(0)
    rss0 = common.peak_rss_mib()
    start = time.perf_counter()
    jit = True if args.jit_compile == "true" else "auto"
    model = common.compile_sgd(
        common.mlp(widths, epsilon=args.epsilon, kernel_impl=args.kernel_impl), jit_compile=jit
    )
    build_s = time.perf_counter() - start
    nnz = common.nnz(model)
    print(f"{sum(widths):,} neurons, nnz {nnz:,}, built in {build_s:.1f} s", flush=True)
    set_cb, timer = TimedSET(zeta=0.3, seed=0), EpochTimer()
    model.fit(
        x, y, batch_size=args.batch, epochs=2, verbose=0, shuffle=True, callbacks=[timer, set_cb]
    )
    train_s, evolve_s = timer.seconds[1], set_cb.seconds[0]
    peak = common.peak_rss_mib()
    estimate = nnz_bytes(nnz, widths, args.batch) / 2**20
    result = {
        "widths": widths,
        "neurons": sum(widths),
        "nnz": nnz,
        "epsilon": args.epsilon,
        "batch": args.batch,
        "kernel_impl": args.kernel_impl,
        "build_s": build_s,
        "first_epoch_s": timer.seconds[0],
        "train_epoch_s": train_s,
        "evolution_s": evolve_s,
        "epoch_s": train_s + evolve_s,
        "steps": len(timer.steps[1]),
        "median_step_s": float(np.median(timer.steps[1])),
        "sum_steps_s": float(np.sum(timer.steps[1])),
        "peak_rss_mib": peak,
        "rss_before_model_mib": rss0,
        "nnz_estimate_mib": estimate,
        "dense_kernel_mib": sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        * 4
        / 2**20,
        "machine": common.machine(),
    }
    print(
        f"epoch: training {train_s:.1f} s + evolution {evolve_s:.1f} s = "
        f"{train_s + evolve_s:.1f} s ({result['steps']} steps, median "
        f"{result['median_step_s'] * 1e3:.0f} ms, {result['sum_steps_s']:.1f} s in steps; "
        f"first epoch, with tracing: {timer.seconds[0]:.1f} s); "
        f"peak RSS {peak:,.0f} MiB (before the model {rss0:,.0f} MiB), nnz-based estimate "
        f"{estimate:,.0f} MiB; a dense float32 kernel would need "
        f"{result['dense_kernel_mib']:,.0f} MiB",
        flush=True,
    )
    name = args.output or f"bench_scale_{args.hidden}.json"
    print("wrote", common.write_json(name, result))


if __name__ == "__main__":
    main()
