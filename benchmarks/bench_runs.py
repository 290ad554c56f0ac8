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
- `npset_over_set`: NPSET's whole run over SET's (medians over rounds), with
  `npset_over_set_by_round` (each round's pair: the spread behind the median)
  and `npset_over_set_epochs` (`fit`'s epochs alone, without start-up and exit);
- where a run's time goes: `startup_s` (process start to `fit`'s first
  callback: imports, data, model), `first_epoch_s` (tracing and compilation),
  `ordinary_epoch_parts_s` (median seconds per ordinary epoch of training and
  of each callback's part: evaluation on the test split, SET, pruning,
  checkpoint, logging) and `teardown_s` (final files and interpreter exit;
  split into `final_files_s`, up to `train.main`'s return, and `exit_s`);
- `tf_import_s`: a process that only imports TensorFlow and Keras, measured
  before each round: the floor under any TensorFlow run on the machine.

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
import shlex
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_npset.experiments.quiet import import_tensorflow_quietly  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("set", "npset")


def _child(clock_path: str, train_args: list[str]) -> int:
    """Run `train.main(train_args)` with an epoch clock; write the clock to `clock_path`."""
    # TensorFlow through train.py: without its import-time output, as when train.py runs.
    import_tensorflow_quietly(without_sklearn=True)
    train = importlib.import_module("train")

    import keras

    from keras_npset.experiments import run as run_lib

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.begin_wall = time.time()
            self.ends = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

        def on_train_end(self, logs=None):
            with open(clock_path, "w") as f:
                json.dump(
                    {
                        "epoch_s": np.diff(self.ends).tolist(),
                        "train_begin_wall": self.begin_wall,
                        "train_end_wall": time.time(),
                        "callback_s": {k: v for k, v in spent.items()},
                    },
                    f,
                )

    # Seconds each callback spends per epoch in its epoch hooks (pruning runs at the
    # beginning of an epoch, SET, evaluation, checkpoint and logging at its end).
    spent: dict[str, list[float]] = {}

    def timed(callback):
        name = type(callback).__name__
        begin, end = callback.on_epoch_begin, callback.on_epoch_end

        def on_epoch_begin(epoch, logs=None):
            start = time.perf_counter()
            begin(epoch, logs)
            spent.setdefault(name, []).append(time.perf_counter() - start)

        def on_epoch_end(epoch, logs=None):
            start = time.perf_counter()
            end(epoch, logs)
            spent[name][-1] += time.perf_counter() - start

        callback.on_epoch_begin, callback.on_epoch_end = on_epoch_begin, on_epoch_end
        return callback

    callbacks = run_lib._callbacks

    def timed_callbacks(*args, **kwargs):
        return [timed(c) for c in callbacks(*args, **kwargs)]

    run_lib._callbacks = timed_callbacks
    run = run_lib.run

    def run_with_clock(*args, **kwargs):
        kwargs["extra_callbacks"] = [*(kwargs.get("extra_callbacks") or []), EpochClock()]
        return run(*args, **kwargs)

    run_lib.run = run_with_clock
    code = train.main(train_args)
    with open(clock_path + ".exit", "w") as f:  # every file of the run is written
        json.dump({"main_end_wall": time.time()}, f)
    from keras_npset.experiments.quiet import exit_now

    exit_now(code)  # as train.py ends


# What each callback of a train.py run does, for the per-epoch breakdown.
PARTS = {
    "TestSetMetrics": "evaluation",
    "SETEvolution": "set",
    "NeuronPruning": "pruning",
    "TrainingStateCheckpoint": "checkpoint",
    "TensorBoard": "logging",
    "TopologyLogger": "logging",
    "EpochLine": "logging",
    "RunHistory": "logging",
}


def epoch_parts(epoch_s: list[float], callback_s: dict[str, list[float]], epochs) -> dict:
    """Median seconds per ordinary epoch of each part: training is what callbacks leave."""
    parts: dict[str, list[float]] = {"training": [0.0] * len(epochs)}
    for i, e in enumerate(epochs):
        total = 0.0
        for name, seconds in callback_s.items():
            if name == "EpochClock":
                continue
            parts.setdefault(PARTS.get(name, "other"), [0.0] * len(epochs))[i] += seconds[e]
            total += seconds[e]
        parts["training"][i] = epoch_s[e] - total
    return {part: float(np.median(values)) for part, values in parts.items()}


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
    start, start_wall = time.perf_counter(), time.time()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    run_s = time.perf_counter() - start
    end_wall = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {method} failed:\n{proc.stderr[-3000:]}")
    with open(clock) as f:
        clock_data = json.load(f)
    with open(clock + ".exit") as f:
        main_end_wall = json.load(f)["main_end_wall"]
    epoch_s = clock_data["epoch_s"]
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
        # Process start to fit's first callback (imports, data, model, compile), and fit's
        # end to process exit (final model, results files, interpreter shutdown).
        "startup_s": clock_data["train_begin_wall"] - start_wall,
        "teardown_s": end_wall - clock_data["train_end_wall"],
        # ... split: fit's end to train.main's return (the last checkpoint write, the
        # model, features and results files), and from there to the parent seeing the exit.
        "final_files_s": main_end_wall - clock_data["train_end_wall"],
        "exit_s": end_wall - main_end_wall,
        "first_epoch_s": epoch_s[0],
        "ordinary_epoch_s": float(np.median(ordinary)),
        "ordinary_epoch_parts_s": epoch_parts(
            epoch_s,
            clock_data["callback_s"],
            [e for e in range(1, len(epoch_s)) if e not in events],
        ),
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
        # The same parts over the event epochs after the first (which traces and
        # compiles): what the pruning phase spends where.
        later = [e for e in sorted(events) if e > 0]
        if later:
            row["event_epoch_parts_s"] = epoch_parts(epoch_s, clock_data["callback_s"], later)
        row["event_over_ordinary"] = row["event_epoch_s"] / row["ordinary_epoch_s"]
        after = [s for e, s in enumerate(epoch_s) if e > max(events)]
        row["after_pruning_epoch_s"] = float(np.median(after)) if after else None
    return row


def import_seconds() -> float:
    """Wall clock of a process that only imports TensorFlow and Keras (as train.py does).

    The floor under any TensorFlow program's whole run on this machine.
    """
    code = (
        "from keras_npset.experiments.quiet import import_tensorflow_quietly as f; "
        "f(without_sklearn=True)"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    return time.perf_counter() - start


def run_original(dataset: str, args) -> dict:
    """`args.original` on `dataset`, timed from start to exit: the whole process."""
    from keras_npset.experiments.config import load_config

    name = os.path.splitext(os.path.basename(dataset))[0]
    cfg = load_config(os.path.join(ROOT, "configs", f"{name}.toml"), args.overrides)
    command = args.original.format(
        data=shlex.quote(os.path.abspath(dataset)),
        hidden=cfg.model.hidden[0],
        epochs=args.epochs,
        seed=cfg.train.seed,
        python=shlex.quote(sys.executable),
    )
    start = time.perf_counter()
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=ROOT)
    run_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} original failed:\n{proc.stderr[-3000:]}")
    last = proc.stdout.strip().splitlines()[-1:]
    return {
        "dataset": name,
        "method": "original",
        "run_s": run_s,
        "command": command,
        "last_line": last[0] if last else "",
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per dataset: medians over rounds of each method's figures, and NPSET / SET."""
    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        entry = {"dataset": name}
        for method in METHODS:
            mine = [r for r in rows if r["dataset"] == name and r["method"] == method]
            keys = ("run_s", "ordinary_epoch_s", "event_epoch_s", "after_pruning_epoch_s")
            keys += ("startup_s", "first_epoch_s", "teardown_s", "final_files_s", "exit_s")
            for key in keys:
                values = [r[key] for r in mine if r.get(key) is not None]
                if values:
                    entry[f"{method}_{key}"] = float(np.median(values))
            parts = {p for r in mine for p in r.get("ordinary_epoch_parts_s", {})}
            entry[f"{method}_epoch_parts_s"] = {
                p: float(np.median([r["ordinary_epoch_parts_s"].get(p, 0.0) for r in mine]))
                for p in sorted(parts)
            }
        original = [r["run_s"] for r in rows if r["dataset"] == name and r["method"] == "original"]
        if original:
            entry["original_run_s"] = float(np.median(original))
            for method in METHODS:
                entry[f"original_over_{method}"] = (
                    entry["original_run_s"] / entry[f"{method}_run_s"]
                )
        entry["npset_over_set"] = entry["npset_run_s"] / entry["set_run_s"]
        # The spread behind the median: NPSET / SET of each round (the two runs
        # of a round are adjacent in time, so they share the machine's state),
        # and of fit's epochs alone, without start-up and exit.
        by_round = {}
        for r in rows:
            if r["dataset"] == name and r["method"] in METHODS:
                by_round.setdefault(r.get("round", 0), {})[r["method"]] = r
        pairs = [p for p in by_round.values() if set(METHODS) <= set(p)]
        entry["npset_over_set_by_round"] = [p["npset"]["run_s"] / p["set"]["run_s"] for p in pairs]
        entry["npset_over_set_epochs"] = float(
            np.median([sum(p["npset"]["epoch_s"]) for p in pairs])
            / np.median([sum(p["set"]["epoch_s"]) for p in pairs])
        )
        entry["npset_event_over_ordinary"] = (
            entry["npset_event_epoch_s"] / entry["npset_ordinary_epoch_s"]
        )
        summary.append(entry)
    return summary


def breakdown_table(summary: list[dict]) -> str:
    """Where a whole run's time goes: start-up, first epoch, an ordinary epoch by part, exit."""
    from benchmarks import common

    parts = ["training", "evaluation", "set", "pruning", "checkpoint", "logging"]
    head = ["dataset", "method", "start-up s", "first epoch s", "epoch ms"]
    head += [f"{p} ms" for p in parts] + ["exit s"]
    body = []
    for s in summary:
        for method in METHODS:
            epoch_parts = s.get(f"{method}_epoch_parts_s", {})
            body.append(
                [s["dataset"], method]
                + [f"{s.get(f'{method}_{k}', float('nan')):.2f}" for k in ("startup_s",)]
                + [f"{s.get(f'{method}_first_epoch_s', float('nan')):.2f}"]
                + [f"{1e3 * s[f'{method}_ordinary_epoch_s']:.0f}"]
                + [f"{1e3 * epoch_parts.get(p, 0.0):.1f}" for p in parts]
                + [f"{s.get(f'{method}_teardown_s', float('nan')):.2f}"]
            )
    return common.markdown_table(head, body)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[3:])
    import_tensorflow_quietly()
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
    parser.add_argument(
        "--original",
        metavar="COMMAND",
        help="also time this command once per round, beside SET and NPSET (e.g. the paper's "
        "original SciPy code through benchmarks/original_set_mlp.py); {data}, {hidden}, {epochs}, "
        "{seed} and {python} are replaced by the dataset path, the config's hidden width, the "
        "epochs, the seed and this Python interpreter",
    )
    parser.add_argument("--output", default="bench_runs.json")
    args = parser.parse_args(argv)
    for path in args.data:
        name = os.path.splitext(os.path.basename(path))[0]
        if not os.path.isfile(os.path.join(ROOT, "configs", f"{name}.toml")):
            raise ValueError(f"Expected a configs/{name}.toml for each dataset. Received: {path!r}")
    rows, imports = [], []
    with tempfile.TemporaryDirectory(prefix="bench_runs-") as workdir:
        for path in args.data:
            for round_ in range(args.rounds):
                imports.append(import_seconds())
                order = METHODS if round_ % 2 == 0 else METHODS[::-1]
                if args.original:
                    row = run_original(path, args)
                    row["round"] = round_
                    rows.append(row)
                    print(
                        f"{row['dataset']} original: run {row['run_s']:.1f} s ({row['last_line']})",
                        flush=True,
                    )
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
    tf_import_s = float(np.median(imports))
    for entry in summary:
        entry["tf_import_s"] = tf_import_s
        for method in METHODS:
            entry[f"{method}_run_over_import"] = entry[f"{method}_run_s"] / tf_import_s
    print(f"importing TensorFlow and Keras alone: {tf_import_s:.1f} s (median of {len(imports)})")
    head = ["dataset", "SET run s", "NPSET run s", "NPSET / SET", "per round", "epochs only"]
    head += ["SET epoch s", "NPSET epoch s", "NPSET event epoch s", "event / epoch"]
    body = [
        [
            s["dataset"],
            f"{s['set_run_s']:.1f}",
            f"{s['npset_run_s']:.1f}",
            f"{s['npset_over_set']:.2f}",
            f"{min(s['npset_over_set_by_round']):.2f}-{max(s['npset_over_set_by_round']):.2f}",
            f"{s['npset_over_set_epochs']:.2f}",
            f"{s['set_ordinary_epoch_s']:.3f}",
            f"{s['npset_ordinary_epoch_s']:.3f}",
            f"{s['npset_event_epoch_s']:.3f}",
            f"{s['npset_event_over_ordinary']:.2f}",
        ]
        for s in summary
    ]
    print(common.markdown_table(head, body))
    if args.original:
        head = ["dataset", "original run s", "SET run s", "NPSET run s", "original / SET"]
        head += ["original / NPSET"]
        body = [
            [
                s["dataset"],
                f"{s['original_run_s']:.1f}",
                f"{s['set_run_s']:.1f}",
                f"{s['npset_run_s']:.1f}",
                f"{s['original_over_set']:.2f}",
                f"{s['original_over_npset']:.2f}",
            ]
            for s in summary
        ]
        print(common.markdown_table(head, body))
    print(breakdown_table(summary))
    print(
        "wrote",
        common.write_results(args.output, args, rows, summary=summary, tf_import_s=imports),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
