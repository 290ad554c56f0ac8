"""Helpers shared by the benchmark scripts: models, machine limits, results files."""

from __future__ import annotations

import os
import platform
import resource
import time

import keras
import numpy as np

from keras_npset import SparseDense
from keras_npset.experiments import models
from keras_npset.experiments import run as run_lib

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def mlp(widths, sparse=True, epsilon=10, kernel_impl="auto", seed=0):
    """The papers' MLP `widths[0] -> widths[1:-1] -> widths[-1]`, softmax output:
    `keras_npset.experiments.models.build_model` (method `set` or `dense`)."""
    return models.build_model(
        "set" if sparse else "dense",
        widths[0],
        widths[-1],
        list(widths[1:-1]),
        epsilon=epsilon,
        seed=seed,
        loss="categorical_crossentropy",  # softmax output, for compile_sgd's loss
        kernel_impl=kernel_impl,
    )


def compile_sgd(model, steps_per_execution=1, jit_compile="auto", lr=0.01):
    """SGD with momentum 0.9 and sparse categorical cross-entropy."""
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def nnz(model) -> int:
    return sum(layer.nnz for layer in model.layers if isinstance(layer, SparseDense))


def machine_peaks(repeats=5):
    """(P, BW): FLOP/s of a large float32 matmul, bytes/s of a large copy.

    Measured with TensorFlow (all cores) in the calling process; best of
    `repeats`.
    """
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    src = tf.random.normal((64 * 2**20,))  # 256 MiB
    flops, bw = 0.0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        flops = max(flops, 2 * n**3 / (time.perf_counter() - start))
        start = time.perf_counter()
        # Read and write every byte once; reduce a tiny slice so the copy runs.
        dst = src + 0.0
        float(dst[-1])
        bw = max(bw, 2 * src.shape[0] * 4 / (time.perf_counter() - start))
    return flops, bw


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of `head` and rows of already formatted cells."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict) -> str:
    """Write `payload` to `benchmarks/results/<name>` atomically; return the path.

    An absolute `name` is written where it says. The library's atomic writer
    does the work (temporary file beside the target, then rename).
    """
    path = os.path.join(RESULTS_DIR, name)
    run_lib.write_json(path, payload)
    return path


def write_results(name: str, args, rows: list, **fields) -> str:
    """Write a benchmark's results file: its arguments, `fields`, its rows and the machine."""
    payload = {"args": vars(args), **fields, "rows": rows, "machine": machine()}
    return write_json(name, payload)
