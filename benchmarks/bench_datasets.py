"""SET evolution's share of a training epoch on each of the paper's datasets at hand.

For every `configs/<name>.toml` whose `<data-dir>/<name>.mat` exists, trains
the config's SET-MLP for a few epochs as `train.py` would (the paper's
settings: Table 3's hidden widths, epsilon 10, batch 2, MSE on a sigmoid
output, SGD with momentum and weight decay, the paper's split, `train.py`'s
feed and steps per execution), without the per-epoch test evaluation.
Whole epochs are timed as in `bench_epoch.py`, SET evolution by wrapping its
callback. Reports the median epoch after the first (which traces and
compiles): training seconds, evolution seconds and the evolution's share.

Usage:

    python -m benchmarks.bench_datasets --data-dir /work/shared/datasets
    python -m benchmarks.bench_datasets --data-dir DIR --datasets madelon leukemia --epochs 4
"""

from __future__ import annotations

import argparse
import glob
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.bench_epoch import EpochClock, TimedSET  # noqa: E402
from keras_npset.experiments import data, data_order, models  # noqa: E402
from keras_npset.experiments import run as run_lib  # noqa: E402
from keras_npset.experiments.config import load_config  # noqa: E402


def available(data_dir, names=None):
    """`(name, config path, data path)` for the configs whose `.mat` file is in `data_dir`."""
    found = []
    for config in sorted(glob.glob(os.path.join(ROOT, "configs", "*.toml"))):
        name = os.path.splitext(os.path.basename(config))[0]
        path = os.path.join(data_dir, f"{name}.mat")
        if (names is None or name in names) and os.path.exists(path):
            found.append((name, config, path))
    return found


def measure(config, path, args):
    overrides = [f'data.path="{path}"', "model.method=set", f"train.seed={args.seed}"]
    if args.hidden:
        overrides.append(f"model.hidden={args.hidden}")
    cfg = load_config(config, overrides)
    dataset = data.load_from_config(cfg.data, args.seed)
    widths = models.widths_for("set", cfg)
    x = dataset.x_train
    y = keras.utils.to_categorical(dataset.y_train, dataset.n_classes)
    epochs = args.epochs + 1  # SET does not evolve after the last epoch
    batches, steps = data_order.epoch_batches(x, y, cfg.train.batch_size, args.seed, 0, epochs)
    keras.utils.set_random_seed(args.seed)
    model = run_lib.compiled_model(cfg, dataset, widths)  # as train.py builds and compiles
    clock = EpochClock()
    evolution = TimedSET(zeta=cfg.model.zeta, init=cfg.model.init, seed=args.seed)
    model.fit(
        batches, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[clock, evolution]
    )
    measured = range(1, args.epochs)  # after the first (tracing) epoch, before the last
    # The clock, listed first, stops before the evolution starts.
    train = float(np.median([clock.seconds[e] for e in measured]))
    evolve = float(np.median([evolution.seconds[e] for e in measured]))
    epoch = float(np.median([clock.seconds[e] + evolution.seconds[e] for e in measured]))
    values = [layer.values.numpy() for layer in model.layers if hasattr(layer, "nnz")]
    return {
        "dataset": dataset.name,
        "train_samples": int(len(x)),
        "widths": [int(x.shape[1]), *widths, dataset.n_classes],
        "nnz": common.nnz(model),
        "steps_per_epoch": steps,
        "steps_per_execution": int(model.steps_per_execution),
        "epoch_s": epoch,
        "train_s": train,
        "evolution_s": evolve,
        "evolution_share": evolve / epoch,
        # SET removes nothing from non-finite weights: its time would mean nothing.
        "finite_weights": bool(all(np.isfinite(v).all() for v in values)),
    }


def table(rows):
    head = ["dataset", "train samples", "widths", "nnz", "steps", "epoch s", "train s"]
    head += ["evolution s", "evolution share", "finite weights"]
    cells = [
        [
            r["dataset"],
            str(r["train_samples"]),
            "-".join(map(str, r["widths"])),
            f"{r['nnz']:,}",
            str(r["steps_per_epoch"]),
            f"{r['epoch_s']:.3f}",
            f"{r['train_s']:.3f}",
            f"{r['evolution_s']:.3f}",
            f"{r['evolution_share']:.0%}",
            "yes" if r["finite_weights"] else "NO",
        ]
        for r in rows
    ]
    return common.markdown_table(head, cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder of scikit-feature .mat files")
    parser.add_argument("--datasets", nargs="+", default=None, help="default: all available")
    parser.add_argument("--epochs", type=int, default=4, help="measured epochs, the first traces")
    parser.add_argument("--hidden", nargs="+", type=int, default=None, help="instead of Table 3's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="bench_datasets.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first traces); got {args.epochs}")
    found = available(args.data_dir, args.datasets)
    if not found:
        parser.error(f"no configs/<name>.toml with a <name>.mat in {args.data_dir!r}")
    rows = []
    for _, config, path in found:
        rows.append(measure(config, path, args))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    print("wrote", common.write_results(args.output, args, rows))


if __name__ == "__main__":
    main()
