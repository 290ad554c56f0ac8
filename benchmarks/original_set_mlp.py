"""Run the paper's original SET-MLP SciPy/Cython code on a scikit-feature dataset.

A driver for `bench_runs --original`: it times the original code beside
`train.py`, in the same kind of process. The original is not part of this
repository (its code stays in its own): get
`SET-MLP-Sparse-Python-Data-Structures/set_mlp_sparse_data_structures.py` from
https://github.com/dcmocanu/sparse-evolutionary-artificial-neural-networks into a
folder, with its Cython kernel `sparseoperations.pyx` compiled there
(`cythonize -i sparseoperations.pyx`). If the module defines the vectorised
`weightsEvolution_II` of the code's 2019 version (`set_mlp.py` in the same
repository: "the same behaviour ... much faster"), it replaces the loop version,
so the original is timed at its fastest.

What this driver does is the original's `__main__` with the paper's settings:
NumPy's global generator seeded once, one shuffle of the samples, the first
`int(n * 2 / 3)` for training, inputs standardised with the training split's
mean and std (+1e-4), layers `(features, hidden, hidden, classes)` with ReLU,
ReLU, sigmoid, epsilon 10, its `MSE`, batch 2, learning rate 0.01, momentum
0.9, weight decay 0.0002 and zeta 0.3, a test evaluation after every epoch.

Two adaptations to today's libraries, neither changing what the code computes:

- SciPy now shares the data of `coo_matrix(csr)` with the CSR matrix, so the
  Cython kernel, which writes the gradient into `dw.data`, overwrote the
  weights themselves and training collapsed to chance; the driver makes that
  conversion copy, as it did on the SciPy the code was written for.
- `np.in1d` (used by `weightsEvolution_II`) is gone from NumPy 2.4; the driver
  provides it as `np.isin(...).ravel()`, its documented equivalent.

Usage:

    python benchmarks/original_set_mlp.py --code DIR DATA.mat --hidden 1000 --epochs 100
    python -m benchmarks.bench_runs DIR/Yale.mat --original \\
        "python benchmarks/original_set_mlp.py --code ORIG {data} --hidden {hidden} \\
        --epochs {epochs} --seed {seed}"
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import numpy as np
import scipy.io
import scipy.sparse


def load_original(code_dir: str):
    """Import the original module from `code_dir`, adapted to today's SciPy and NumPy."""
    sys.path.insert(0, code_dir)
    if getattr(np, "in1d", None) is None:
        np.in1d = lambda a, b: np.isin(a, b).ravel()
    original = importlib.import_module("set_mlp_sparse_data_structures")

    def coo_matrix(arg, *args, **kwargs):
        if scipy.sparse.issparse(arg):
            kwargs.setdefault("copy", True)
        return scipy.sparse.coo_matrix(arg, *args, **kwargs)

    original.coo_matrix = coo_matrix
    net = original.SET_MLP
    if hasattr(net, "weightsEvolution_II"):
        net.weightsEvolution = net.weightsEvolution_II
    return original


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="scikit-feature .mat file (keys X, Y)")
    parser.add_argument("--code", required=True, help="folder holding the original module")
    parser.add_argument("--hidden", type=int, required=True, help="width of both hidden layers")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilon", type=int, default=10)
    parser.add_argument("--weight-decay", type=float, default=0.0002)
    parser.add_argument("--output", help="also write the test accuracy of every epoch here (JSON)")
    args = parser.parse_args(argv)
    original = load_original(args.code)

    np.random.seed(args.seed)
    mat = scipy.io.loadmat(args.data)
    x = np.asarray(mat["X"])
    labels = np.asarray(mat["Y"]).ravel()
    y = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    order = np.arange(x.shape[0])
    np.random.shuffle(order)
    n_train = int(x.shape[0] * 2 / 3)
    x_train = x[order[:n_train]].astype("float64")
    x_test = x[order[n_train:]].astype("float64")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    x_train = (x_train - mean) / (std + 0.0001)
    x_test = (x_test - mean) / (std + 0.0001)

    net = original.SET_MLP(
        (x.shape[1], args.hidden, args.hidden, y.shape[1]),
        (original.Relu, original.Relu, original.Sigmoid),
        epsilon=args.epsilon,
    )
    metrics = net.fit(
        x_train,
        y[order[:n_train]],
        x_test,
        y[order[n_train:]],
        loss=original.MSE,
        epochs=args.epochs,
        batch_size=2,
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=args.weight_decay,
        zeta=0.3,
        testing=True,
    )
    accuracy = 100 * metrics[:, 1]
    print(f"max test accuracy {accuracy.max():.2f}%, last epoch {accuracy[-1]:.2f}%")
    if args.output:
        result = {
            "args": vars(args),
            "dataset": os.path.splitext(os.path.basename(args.data))[0],
            "train_test": [n_train, x.shape[0] - n_train],
            "max_test_accuracy": float(accuracy.max()),
            "final_test_accuracy": float(accuracy[-1]),
            "test_accuracy": accuracy.tolist(),
            "train_loss": metrics[:, 0].tolist(),
        }
        # Atomic like the library's `run.write_json`, which would import TensorFlow
        # into a process that times the original code.
        tmp = f"{args.output}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
