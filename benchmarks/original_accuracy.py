"""The paper's original SET-MLP code's test accuracy, beside Table 2 and this library's SET.

Runs `benchmarks/original_set_mlp.py` (the public SciPy/Cython SET-MLP code,
see its docstring for getting it) once per dataset and seed, each on the
original's own split (NumPy seeded with the seed, one shuffle, the first
two thirds for training), and reports the maximum and last-epoch test
accuracy over 100 epochs as mean +- std over seeds, against the paper's
Table 2 SET figure and this library's SET runs of the reproduction
(`benchmarks/results/paper_reproduction.json`, same seeds). Where the
library misses Table 2, this tells whether the paper's own code does too.

Each run writes its JSON into `--runs-dir`; a run found there is reused,
so an interrupted invocation continues where it stopped.

Usage:

    python -m benchmarks.original_accuracy --code ORIG --data-dir DIR \\
        --datasets leukemia orlraws10P Yale --seeds 0 1 2 --runs-dir original-runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import common, reproduce_paper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "benchmarks", "original_set_mlp.py")
REPRODUCTION = os.path.join(ROOT, "benchmarks", "results", "paper_reproduction.json")
DATASETS = (
    "leukemia",
    "PCMAC",
    "lung_discrete",
    "orlraws10P",
    "Prostate_GE",
    "madelon",
    "Yale",
    "RELATHE",
)


def hidden_width(dataset: str) -> int:
    """The hidden width of `configs/<dataset>.toml` (both layers are equal in the paper)."""
    from keras_npset.experiments.config import load_config

    path = os.path.join(ROOT, "configs", f"{dataset}.toml")
    if not os.path.isfile(path):
        raise ValueError(f"Expected a configs/{dataset}.toml for dataset {dataset!r}.")
    return int(load_config(path).model.hidden[0])


def run_path(runs_dir: str, dataset: str, seed: int) -> str:
    """Where the run of `dataset` and `seed` writes its JSON."""
    return os.path.join(runs_dir, f"{dataset}-seed{seed}.json")


def run_one(dataset: str, seed: int, args) -> dict:
    """One run of the original code, or the one already in `args.runs_dir`."""
    out = run_path(args.runs_dir, dataset, seed)
    if not os.path.isfile(out):
        command = [
            sys.executable,
            DRIVER,
            os.path.join(args.data_dir, f"{dataset}.mat"),
            "--code",
            args.code,
            "--hidden",
            str(hidden_width(dataset)),
            "--epochs",
            str(args.epochs),
            "--seed",
            str(seed),
            "--weight-decay",
            str(args.weight_decay),
            "--output",
            out,
        ]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{dataset} seed {seed} failed:\n{proc.stderr[-3000:]}")
    with open(out) as f:
        result = json.load(f)
    asked = {"epochs": args.epochs, "weight_decay": args.weight_decay, "seed": seed}
    found = {key: result["args"][key] for key in asked}
    if found != asked:
        raise ValueError(
            f"Expected the run in {out} to have {asked}. Received: {found} "
            "(use another --runs-dir for other settings)"
        )
    result["seed"] = seed
    return result


def library_set(path: str) -> dict[tuple[str, int], float]:
    """Max test accuracy of the reproduction's SET runs, by (dataset, seed)."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        results = json.load(f)["results"]
    return {
        (r["dataset"], r["seed"]): r["max_test_accuracy"] for r in results if r["method"] == "set"
    }


def summarise(rows: list[dict], paper: dict, ours: dict) -> list[dict]:
    """Per dataset: the original's max and final accuracy, Table 2 and the library's SET."""
    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        seeds = [r["seed"] for r in mine]
        entry = {
            "dataset": name,
            "seeds": seeds,
            "original_max": float(np.mean([r["max_test_accuracy"] for r in mine])),
            "original_max_std": float(np.std([r["max_test_accuracy"] for r in mine])),
            "original_final": float(np.mean([r["final_test_accuracy"] for r in mine])),
            "paper_set": reproduce_paper.paper_float(paper.get(name, {}), "acc_set"),
        }
        library = [ours[(name, s)] for s in seeds if (name, s) in ours]
        entry["library_set_max"] = float(np.mean(library)) if len(library) == len(seeds) else None
        summary.append(entry)
    return summary


def table(summary: list[dict]) -> str:
    head = ["dataset", "seeds", "original max", "original final", "Table 2 SET"]
    head += ["library SET max (its own splits)"]
    head += ["original - Table 2"]
    body = []
    for s in summary:
        paper = s["paper_set"]
        body.append(
            [
                s["dataset"],
                ",".join(str(k) for k in s["seeds"]),
                f"{s['original_max']:.2f} ± {s['original_max_std']:.2f}",
                f"{s['original_final']:.2f}",
                "–" if paper is None else f"{paper:.2f}",
                "–" if s["library_set_max"] is None else f"{s['library_set_max']:.2f}",
                "–" if paper is None else f"{s['original_max'] - paper:+.2f}",
            ]
        )
    return common.markdown_table(head, body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", required=True, help="folder holding the original module")
    parser.add_argument("--data-dir", required=True, help="folder of the scikit-feature .mat files")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="the original's per-step decay (default 0, as the paper configs)",
    )
    parser.add_argument("--runs-dir", required=True, help="per-run JSON files (reused)")
    parser.add_argument("--reproduction", default=REPRODUCTION)
    parser.add_argument("--output", default="original_accuracy.json")
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="report the runs already in --runs-dir, train none (missing ones are listed)",
    )
    args = parser.parse_args(argv)
    for name in args.datasets:
        hidden_width(name)
        if not os.path.isfile(os.path.join(args.data_dir, f"{name}.mat")):
            raise ValueError(f"Expected {name}.mat in --data-dir. Received: {args.data_dir!r}")
    os.makedirs(args.runs_dir, exist_ok=True)
    rows, missing = [], []
    for name in args.datasets:
        for seed in args.seeds:
            if args.collect_only and not os.path.isfile(run_path(args.runs_dir, name, seed)):
                missing.append(f"{name} seed {seed}")
                continue
            row = run_one(name, seed, args)
            rows.append(row)
            print(
                f"{name} seed {seed}: max {row['max_test_accuracy']:.2f}%, "
                f"final {row['final_test_accuracy']:.2f}%",
                flush=True,
            )
    if missing:
        print("not run yet:", ", ".join(missing))
    summary = summarise(rows, reproduce_paper.read_paper_tables(), library_set(args.reproduction))
    print(table(summary))
    for row in rows:  # the per-epoch curves stay in the run files
        row.pop("train_loss", None)
    print(
        "wrote",
        common.write_results(args.output, args, rows, summary=summary, missing=missing),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
