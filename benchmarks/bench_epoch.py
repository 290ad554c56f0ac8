"""Whole `model.fit` epochs with SET and NPSET: evolution and pruning share, shrinking cost.

Trains the paper's MLP (input-7000-7000-classes for Leukemia) twice with the
same data, seed and epochs: SET-MLP (`SETEvolution(zeta=0.3)`) and NPSET
(`SETEvolution(zeta=0.3)` + `NeuronPruning(alpha, start, epochs)`). Each epoch
is timed whole, from Keras's `on_epoch_begin` to the end of the evolution,
and split into SET evolution and neuron pruning (each timed by wrapping its
callback) and training (the rest: the steps and Keras's own per-step and
per-epoch work; after a pruning event also re-tracing and XLA compilation for
the new shapes). Batches come as in `train.py` (`data_order.epoch_batches`,
one `tf.data` iterator across epochs). The
default schedule is the paper's alpha 0.04 with its 41 events compressed onto
consecutive epochs from epoch 1 (7000 -> 1320 neurons per hidden layer by
epoch 41), then 2 epochs on the pruned network; these runs give the
per-epoch table.

The NPSET/SET comparison is timed afterwards, in alternating rounds: each
round continues the SET-MLP, the pruned NPSET network and a tiny dense
input-8-8-classes MLP (same feed and compile, no callbacks: Keras's own
per-step and per-epoch work, a cost no network escapes) for 5 epochs each.
A shared machine's load swings over minutes; alternating every second or so
lets the swings hit all three alike, where the two long runs above may meet
different conditions. The summary compares median epochs (training plus
evolution), with the means beside them.

Compiled as `train.py` compiles by default (a whole epoch per execution up to
4096 steps: all 24 of a Leukemia epoch);
`--steps-per-execution 1` is Keras's default, `--jit-compile true` whole-model
XLA.

Usage:

    python -m benchmarks.bench_epoch /work/shared/datasets/leukemia.mat
    python -m benchmarks.bench_epoch                 # synthetic data, Leukemia's shape
    python -m benchmarks.bench_epoch --quick         # 5 events of alpha 0.3
"""

from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from keras_npset import NeuronPruning, SETEvolution, SparseDense  # noqa: E402
from keras_npset.experiments import data, data_order  # noqa: E402
from keras_npset.experiments.config import TrainConfig  # noqa: E402


def load(path, seed=0):
    """The training split as `train.py` makes it (`keras_npset.experiments.data`: split,
    standardisation, label encoding), or synthetic Leukemia-shaped data (72 x 7070)."""
    if path is None:
        rng = np.random.default_rng(seed)
        x = rng.integers(-2, 3, (72, 7070)).astype(np.float32)
        y = rng.integers(0, 2, 72)
        train_idx, test_idx = data.split_indices(x, y, seed)
        x_train, _ = data.standardize(x[train_idx], x[test_idx])
        return x_train, y[train_idx], 2
    dataset = data.load_dataset(path, seed)
    return dataset.x_train, dataset.y_train, dataset.n_classes


class Timed:
    """Mixin timing the callback's topology step of every epoch."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.seconds = {}

    def _timed(self, epoch, step):
        start = time.perf_counter()
        out = step()
        self.seconds[epoch] = time.perf_counter() - start
        return out


class TimedSET(Timed, SETEvolution):
    def on_epoch_end(self, epoch, logs=None):
        self._timed(epoch, lambda: SETEvolution.on_epoch_end(self, epoch, logs))


class TimedPruning(Timed, NeuronPruning):
    def on_epoch_begin(self, epoch, logs=None):
        self._timed(epoch, lambda: NeuronPruning.on_epoch_begin(self, epoch, logs))


class EpochClock(keras.callbacks.Callback):
    """Per epoch: seconds from `on_epoch_begin` to `on_epoch_end`, and the topology.

    Listed first, so its epoch starts before the pruning callback's and ends
    before the evolution's. It has no batch hooks: those would make Keras
    convert the logs to Python after every step and so add a wait per step.
    """

    def on_train_begin(self, logs=None):
        self.seconds, self.nnz, self.units = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.nnz.append(common.nnz(self.model))
        sparse = [layer for layer in self.model.layers if isinstance(layer, SparseDense)]
        self.units.append([layer.units for layer in sparse[:-1]])  # the hidden layers


def run(kind, x, y, classes, args):
    keras.utils.set_random_seed(args.seed)
    widths = [x.shape[1], *args.hidden, classes]
    jit = True if args.jit_compile == "true" else "auto"
    # The experiment runner's feed (one tf.data iterator across all epochs) and
    # its choice of steps per execution.
    batches, steps = data_order.epoch_batches(x, y, args.batch, args.seed, 0, args.epochs)
    spe = data_order.execution_steps(args.steps_per_execution, steps)
    model = common.compile_sgd(common.mlp(widths, epsilon=args.epsilon, seed=args.seed), spe, jit)
    clock, evolution = EpochClock(), TimedSET(zeta=0.3, seed=args.seed)
    callbacks = [clock, evolution]
    pruning = None
    if kind == "NPSET":
        pruning = TimedPruning(
            alpha=args.alpha, start=args.start, epochs=args.prune_epochs, seed=args.seed
        )
        callbacks.insert(1, pruning)
    model.fit(batches, steps_per_epoch=steps, epochs=args.epochs, verbose=0, callbacks=callbacks)
    epochs = []
    for e in range(args.epochs):
        evolve = evolution.seconds.get(e, 0.0)
        prune = pruning.seconds.get(e, 0.0) if pruning else 0.0
        epochs.append(
            {
                "epoch": e,
                "train_s": clock.seconds[e] - prune,
                "evolution_s": evolve,
                "pruning_s": prune,
                "total_s": clock.seconds[e] + evolve + prune,
                "nnz": clock.nnz[e],
                "units": clock.units[e],
            }
        )
    return model, epochs


ROUND_EPOCHS = 5


def interleaved(models, x, y, args):
    """Per model, `(training s, evolution s)` of epochs timed in alternating rounds.

    Each round continues every model for `ROUND_EPOCHS` epochs in turn (a
    `fit` each, with `SETEvolution` where asked); epochs 1-3 of each are kept:
    epoch 0 creates the iterator and the last one does not evolve. Slow swings
    of a shared machine's load then hit all models alike.
    """
    batches, steps = data_order.epoch_batches(x, y, args.batch, args.seed, 0, ROUND_EPOCHS)
    timed = {name: [] for name in models}
    for r in range(args.rounds):
        for name, (model, evolves) in models.items():
            clock = EpochClock()
            evolution = TimedSET(zeta=0.3, seed=args.seed + r) if evolves else None
            callbacks = [clock] + ([evolution] if evolution else [])
            # Garbage of earlier fits (and of building the models) is collected
            # now, not by a full collection inside a timed epoch (one such
            # pause took 0.35 s, in the middle of an evolution).
            gc.collect()
            model.fit(
                batches, steps_per_epoch=steps, epochs=ROUND_EPOCHS, verbose=0, callbacks=callbacks
            )
            for e in range(1, ROUND_EPOCHS - 1):
                evolve = evolution.seconds[e] if evolution else 0.0
                timed[name].append((clock.seconds[e], evolve))
    return timed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default=None, help="scikit-feature .mat file.")
    parser.add_argument("--hidden", nargs="+", type=int, default=[7000, 7000])
    parser.add_argument("--epsilon", type=float, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=0.04)
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=40)
    parser.add_argument("--after", type=int, default=2, help="Epochs after the last event.")
    parser.add_argument(
        "--rounds", type=int, default=6, help="Alternating rounds timed after the runs."
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=TrainConfig.steps_per_execution,
        help="as train.py's default; 1 is Keras's",
    )
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.alpha, args.prune_epochs, args.after, args.rounds = 0.3, 4, 3, 2
    args.epochs = args.start + args.prune_epochs + 1 + args.after
    x, y, classes = load(args.data)
    rss0 = common.peak_rss_mib()
    trained = {kind: run(kind, x, y, classes, args) for kind in ("SET", "NPSET")}
    results = {kind: rows for kind, (_, rows) in trained.items()}
    last = args.start + args.prune_epochs
    keras.utils.set_random_seed(args.seed)
    tiny = common.mlp([x.shape[1], 8, 8, classes], sparse=False)
    spe = int(trained["SET"][0].steps_per_execution)  # the runs' choice
    tiny = common.compile_sgd(tiny, spe, True if args.jit_compile == "true" else "auto")
    models = {"SET": (trained["SET"][0], True), "NPSET": (trained["NPSET"][0], True)}
    timed = interleaved({**models, "floor": (tiny, False)}, x, y, args)

    head = ["epoch", "SET s (train + evolve)", "NPSET s (train + evolve + prune)"]
    head += ["NPSET nnz", "NPSET units"]
    body = []
    for e in sorted({0, 1, 2, *range(0, args.epochs, 5), last, last + 1, args.epochs - 2}):
        s, n = results["SET"][e], results["NPSET"][e]
        body.append(
            [
                str(e),
                f"{s['total_s']:.3f} ({s['train_s']:.3f} + {s['evolution_s']:.3f})",
                f"{n['total_s']:.3f} ({n['train_s']:.3f} + {n['evolution_s']:.3f} + "
                f"{n['pruning_s']:.3f})",
                f"{n['nnz']:,}",
                str(n["units"]),
            ]
        )
    print(common.markdown_table(head, body))

    def epoch(name, stat=np.median):
        return float(stat([train + evolve for train, evolve in timed[name]]))

    def evolution_share(name):
        return float(np.sum([e for _, e in timed[name]]) / np.sum(timed[name]))

    set_epoch, np_epoch, floor = epoch("SET"), epoch("NPSET"), epoch("floor")
    set_mean, np_mean = epoch("SET", np.mean), epoch("NPSET", np.mean)
    summary = {
        "set_epoch_s": set_epoch,
        "npset_epoch_s": np_epoch,
        "npset_over_set": np_epoch / set_epoch,
        "set_epoch_mean_s": set_mean,
        "npset_epoch_mean_s": np_mean,
        "npset_over_set_mean": np_mean / set_mean,
        "set_evolution_share": evolution_share("SET"),
        "npset_evolution_share_after": evolution_share("NPSET"),
        "keras_floor_epoch_s": floor,
        "keras_floor_share_of_npset": floor / np_epoch,
        "timed_epochs": len(timed["SET"]),
        "pruning_share_during": float(
            np.mean(
                [r["pruning_s"] / r["total_s"] for r in results["NPSET"][args.start : last + 1]]
            )
        ),
        "steps_per_execution": spe,
        "peak_rss_mib": common.peak_rss_mib(),
        "rss_before_models_mib": rss0,
        "set_nnz": results["SET"][-1]["nnz"],
        "npset_nnz": results["NPSET"][-1]["nnz"],
    }
    print(
        f"\nAfter pruning ({len(timed['SET'])} epochs each in {args.rounds} alternating rounds, "
        f"median epoch): NPSET "
        f"{np_epoch:.4f} s vs SET-MLP {set_epoch:.4f} s = {summary['npset_over_set']:.1%} "
        f"(means: {np_mean:.4f} s vs {set_mean:.4f} s = {summary['npset_over_set_mean']:.1%}); "
        f"evolution share of a SET epoch {summary['set_evolution_share']:.0%}, of an NPSET "
        f"epoch {summary['npset_evolution_share_after']:.0%}; pruning share of the epochs "
        f"with an event {summary['pruning_share_during']:.0%}. An epoch of a dense "
        f"{x.shape[1]}-8-8-{classes} MLP on the same feed takes {floor:.4f} s, "
        f"{summary['keras_floor_share_of_npset']:.0%} of the NPSET epoch. Peak RSS "
        f"{summary['peak_rss_mib']:,.0f} MiB (before the models {rss0:,.0f} MiB; SET-MLP "
        f"nnz {summary['set_nnz']:,} -> about {summary['set_nnz'] * 60 / 2**20:,.0f} MiB "
        "of per-connection state and temporaries at 60 B each)."
    )
    payload = {
        "args": vars(args),
        "summary": summary,
        "epochs": results,
        "interleaved": timed,
        "machine": common.machine(),
    }
    name = args.output or ("bench_epoch_quick.json" if args.quick else "bench_epoch.json")
    print("wrote", common.write_json(name, payload))


if __name__ == "__main__":
    main()
