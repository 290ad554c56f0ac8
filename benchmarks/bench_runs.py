"""Whole `train.py` runs, SET against NPSET: run seconds, ordinary and pruning-event epochs.

For each dataset, runs `train.py --config configs/<dataset>.toml` as a
subprocess once with `model.method=set` and once with `model.method=npset`
(same seed, data and epochs; everything else the config's), alternating
SET and NPSET round by round so that a shared machine's load swings hit both
alike. Each run is what a user gets: a fresh Python process, TensorFlow's
start-up, per-epoch evaluation on the test split, a checkpoint after every
epoch, TensorBoard logging, the final model and results files.

Reported per run:

- `run_s`: the whole process, from start to exit (wall clock of the parent);
- per-epoch wall clock as a user sees it: the time between one epoch's
  `on_epoch_end` and the next one's, taken by a clock callback that the child
  process adds to `train.py`'s callbacks (a window holds exactly one of each
  per-epoch cost: pruning, training, SET evolution, evaluation, checkpoint,
  logging);
- `ordinary_epoch_s`: median over the epochs without a pruning event,
  epoch 0 (tracing and compilation) left out;
- `event_epoch_s` (NPSET): median over the pruning-event epochs, and its ratio
  to NPSET's ordinary epochs;
- `npset_over_set`: NPSET's whole run over SET's.

Usage:

    python -m benchmarks.bench_runs /work/shared/datasets/Prostate_GE.mat \\
        /work/shared/datasets/lung_discrete.mat /work/shared/datasets/Yale.mat
    python -m benchmarks.bench_runs data/Yale.mat --epochs 20 --rounds 2 \
        --set model.hidden=[300,300]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("set", "npset")


def _child(clock_path: str, train_args: list[str]) -> int:
    """Run `train.main(train_args)` with an epoch clock; write the clock to `clock_path`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow through train.py: without its import-time output, as when train.py runs.
    train = importlib.import_module("train")
    train.import_tensorflow_quietly()

    import keras

    from keras_npset.experiments import run as run_lib

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

        def on_train_end(self, logs=None):
            with open(clock_path, "w") as f:
                json.dump({"epoch_s": np.diff(self.ends).tolist()}, f)

    run = run_lib.run

    def run_with_clock(*args, **kwargs):
        kwargs["extra_callbacks"] = [*(kwargs.get("extra_callbacks") or []), EpochClock()]
        return run(*args, **kwargs)

    run_lib.run = run_with_clock
    return train.main(train_args)


def _events(config: dict, epochs: int) -> list[int]:
    from keras_npset.schedules import PruningSchedule

    model = config["model"]
    return PruningSchedule(model["start"], model["prune_epochs"]).events(epochs)


def run_once(dataset: str, method: str, args, workdir: str) -> dict:
    """One `train.py` run in a subprocess; its timings and results."""
    name = os.path.splitext(os.path.basename(dataset))[0]
    out = os.path.join(workdir, f"{name}-{method}")
    clock = os.path.join(workdir, f"{name}-{method}-clock.json")
    train_args = [
        "--config",
        os.path.join(ROOT, "configs", f"{name}.toml"),
        "--fresh",
        "--set",
        f"data.path={json.dumps(os.path.abspath(dataset))}",
        "--set",
        f"model.method={method}",
        "--set",
        f"train.epochs={args.epochs}",
        "--set",
        f"output.dir={json.dumps(out)}",
        "--set",
        "train.verbose=0",
    ]
    for override in args.overrides:
        train_args += ["--set", override]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, os.path.abspath(__file__), "--child", clock, "--", *train_args]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    run_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {method} failed:\n{proc.stderr[-3000:]}")
    with open(clock) as f:
        epoch_s = json.load(f)["epoch_s"]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)["config"]
    events = set(_events(config, args.epochs)) if method != "set" else set()
    ordinary = [s for e, s in enumerate(epoch_s) if e > 0 and e not in events]
    row = {
        "dataset": name,
        "method": method,
        "run_s": run_s,
        "training_s": results["total_seconds"],
        "before_training_s": run_s - sum(epoch_s),
        "first_epoch_s": epoch_s[0],
        "ordinary_epoch_s": float(np.median(ordinary)),
        "epoch_s": epoch_s,
        "events": sorted(events),
        "hidden_units": results["hidden_units"],
        "params": results["params"],
        "max_test_accuracy": results["max_test_accuracy"],
        # Everything the process wrote besides its results: TensorFlow's chatter.
        "stderr": proc.stderr.strip(),
        "retracing_warnings": proc.stderr.count("triggered tf.function retracing"),
    }
    if events:
        row["event_epoch_s"] = float(np.median([epoch_s[e] for e in sorted(events)]))
        row["event_over_ordinary"] = row["event_epoch_s"] / row["ordinary_epoch_s"]
        after = [s for e, s in enumerate(epoch_s) if e > max(events)]
        row["after_pruning_epoch_s"] = float(np.median(after)) if after else None
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Per dataset: medians over rounds of each method's figures, and NPSET / SET."""
    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        entry = {"dataset": name}
        for method in METHODS:
            mine = [r for r in rows if r["dataset"] == name and r["method"] == method]
            for key in ("run_s", "ordinary_epoch_s", "event_epoch_s", "after_pruning_epoch_s"):
                values = [r[key] for r in mine if r.get(key) is not None]
                if values:
                    entry[f"{method}_{key}"] = float(np.median(values))
        entry["npset_over_set"] = entry["npset_run_s"] / entry["set_run_s"]
        entry["npset_event_over_ordinary"] = (
            entry["npset_event_epoch_s"] / entry["npset_ordinary_epoch_s"]
        )
        summary.append(entry)
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[3:])
    from benchmarks import common

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", help="scikit-feature .mat files with a configs/ entry.")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="SET/NPSET pairs per dataset.")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a train.py config override for every run (repeatable)",
    )
    parser.add_argument("--output", default="bench_runs.json")
    args = parser.parse_args(argv)
    for path in args.data:
        name = os.path.splitext(os.path.basename(path))[0]
        if not os.path.isfile(os.path.join(ROOT, "configs", f"{name}.toml")):
            raise ValueError(f"Expected a configs/{name}.toml for each dataset. Received: {path!r}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_runs-") as workdir:
        for path in args.data:
            for round_ in range(args.rounds):
                order = METHODS if round_ % 2 == 0 else METHODS[::-1]
                for method in order:
                    row = run_once(path, method, args, workdir)
                    row["round"] = round_
                    rows.append(row)
                    print(
                        f"{row['dataset']} {method}: run {row['run_s']:.1f} s, ordinary epoch "
                        f"{row['ordinary_epoch_s']:.3f} s"
                        + (
                            f", event epoch {row['event_epoch_s']:.3f} s"
                            if "event_epoch_s" in row
                            else ""
                        ),
                        flush=True,
                    )
    summary = summarise(rows)
    head = ["dataset", "SET run s", "NPSET run s", "NPSET / SET"]
    head += ["SET epoch s", "NPSET epoch s", "NPSET event epoch s", "event / epoch"]
    body = [
        [
            s["dataset"],
            f"{s['set_run_s']:.1f}",
            f"{s['npset_run_s']:.1f}",
            f"{s['npset_over_set']:.2f}",
            f"{s['set_ordinary_epoch_s']:.3f}",
            f"{s['npset_ordinary_epoch_s']:.3f}",
            f"{s['npset_event_epoch_s']:.3f}",
            f"{s['npset_event_over_ordinary']:.2f}",
        ]
        for s in summary
    ]
    print(common.markdown_table(head, body))
    print("wrote", common.write_results(args.output, args, rows, summary=summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
