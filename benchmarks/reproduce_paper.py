"""Reproduce the NPSET paper's Tables 2 and 3: methods x datasets x seeds.

Example (one dataset, one seed, a few epochs, to check the pipeline):

    python -m benchmarks.reproduce_paper --data-dir /path/to/scikit-feature \\
        --datasets lung_discrete --methods set npset --seeds 0 --epochs 5 --out lung.md

Each run is `keras_npset.experiments.run.run` on `configs/<dataset>.toml` with
`data.path = DIR/<dataset>.mat`, written to `--runs-dir/<dataset>/<method>/seed<k>`.
The Markdown report puts our max and final test accuracy (mean +- std over seeds)
beside the paper's Table 2, and our parameter / neuron counts beside Table 3
(read from `benchmarks/paper_tables.csv`). All results also go to `FILE.json`.
A full reproduction (15 datasets x 6 methods x 100 epochs) takes days on a CPU:
`--workers N` trains N runs at a time in separate processes, `--ray ADDRESS` (or
`local`) on a Ray cluster (see `keras_npset.experiments.sweep`, docs/sweeps.md). Finished runs
are reused and killed ones resume, so the same command continues an interrupted grid.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from keras_npset.experiments.config import ConfigError, load_config  # noqa: E402

PAPER_TABLES = os.path.join(ROOT, "benchmarks", "paper_tables.csv")
PAPER_METHODS = ("set", "npset", "npset_1st", "npset_2nd", "direct_set", "direct_fc")
ALL_METHODS = (*PAPER_METHODS, "dense")
# Table 3 columns per method; Table 3 has no entry for the other methods' parameters.
PAPER_PARAMS = {"set": "set_params", "npset": "npset_params", "dense": "fc_params"}
PAPER_NEURONS = {
    "set": "set_neurons",
    "npset": "npset_neurons",
    "dense": "fc_neurons",
    "direct_set": "npset_neurons",
    "direct_fc": "npset_neurons",
}


def read_paper_tables(path: str = PAPER_TABLES) -> dict[str, dict[str, str]]:
    """Rows of the paper's Tables 1-3 keyed by dataset name."""
    with open(path, newline="") as f:
        return {r["dataset"]: r for r in csv.DictReader(x for x in f if not x.startswith("#"))}


def _mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _int(value: float | str | None) -> str:
    return "–" if value in (None, "") else f"{round(float(value)):,}"


def aggregate(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Groups run results by (dataset, method) with lists over seeds."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        g = groups.setdefault(
            (r["dataset"], r["method"]),
            {"max": [], "final": [], "params": [], "neurons": [], "dense_params": [], "seeds": []},
        )
        g["max"].append(r["max_test_accuracy"])
        g["final"].append(r["final_test_accuracy"])
        g["params"].append(r["params"])
        g["neurons"].append(r["neurons"])
        g["dense_params"].append(r["dense_params"])
        g["seeds"].append(r["seed"])
    return groups


# The fidelity targets the report checks (NPSET paper, Tables 2 and 3).
ACCURACY_POINTS = 3.0  # mean max accuracy of SET and NPSET within this many points of Table 2
# Max accuracy of the paper's own code on our split where it misses Table 2 itself (madelon:
# the original SciPy SET code, seed 0, 66.6 against the paper's 71.16): such a dataset is
# also within target when within ACCURACY_POINTS of this figure.
ORIGINAL_CODE_MAX = {"madelon": 66.6}
PARAMS_FRACTION = 0.05  # NPSET parameters within this fraction of Table 3


def paper_float(row: dict[str, str], key: str) -> float | None:
    """A cell of the paper's tables (`paper_tables.csv`) as a float; None where it is empty."""
    value = row.get(key, "")
    return float(value) if value not in ("", None) else None


def fidelity_checks(
    groups: dict[tuple[str, str], dict[str, Any]], paper: dict[str, dict[str, str]]
) -> list[dict[str, Any]]:
    """Per dataset with SET or NPSET runs: our figures against Tables 2 and 3.

    Each row holds the dataset, the paper's and our SET / NPSET mean max accuracy and
    NPSET parameters and neurons, and whether each is within the targets (None where a
    method did not run).
    """
    rows = []
    for dataset in dict.fromkeys(d for d, _ in groups):
        row = paper.get(dataset, {})
        check: dict[str, Any] = {"dataset": dataset}
        for method in ("set", "npset"):
            g = groups.get((dataset, method))
            ours = statistics.fmean(g["max"]) if g else None
            theirs = paper_float(row, f"acc_{method}")
            check[f"{method}_max"] = ours
            check[f"{method}_paper"] = theirs
            refs = [x for x in (theirs, ORIGINAL_CODE_MAX.get(dataset)) if x is not None]
            check[f"{method}_ok"] = (
                None
                if ours is None or theirs is None
                else any(abs(ours - ref) <= ACCURACY_POINTS for ref in refs)
            )
        g = groups.get((dataset, "npset"))
        params, neurons = paper_float(row, "npset_params"), paper_float(row, "npset_neurons")
        check["npset_params"] = statistics.fmean(g["params"]) if g else None
        check["npset_params_paper"] = params
        check["npset_params_ok"] = (
            None
            if g is None or params is None
            else abs(check["npset_params"] / params - 1) <= PARAMS_FRACTION
        )
        check["npset_neurons_ok"] = (
            None if g is None or neurons is None else set(g["neurons"]) == {neurons}
        )
        rows.append(check)
    return rows


def paired_against_fc(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SET and NPSET against `direct_fc` (dense at NPSET's widths) with the same seed.

    One row per (dataset, method) with at least one seed run by both: the seeds, the
    mean difference (method - direct_fc) of max and of final accuracy, and on how many
    seeds the sparse method's final accuracy is higher.
    """
    by_key = {(r["dataset"], r["method"], r["seed"]): r for r in results}
    rows = []
    for dataset, method in dict.fromkeys((r["dataset"], r["method"]) for r in results):
        if method not in ("set", "npset"):
            continue
        seeds = sorted(
            s for d, m, s in by_key if (d, m) == (dataset, method) and (d, "direct_fc", s) in by_key
        )
        if not seeds:
            continue
        pairs = [(by_key[(dataset, method, s)], by_key[(dataset, "direct_fc", s)]) for s in seeds]
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "seeds": seeds,
                "max_diff": [a["max_test_accuracy"] - b["max_test_accuracy"] for a, b in pairs],
                "final_diff": [
                    a["final_test_accuracy"] - b["final_test_accuracy"] for a, b in pairs
                ],
            }
        )
    return rows


def _ok(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:+.2f}{spread}"


def markdown_report(
    results: list[dict[str, Any]],
    paper: dict[str, dict[str, str]],
    epochs: int | str,
    notes: list[str] = (),
) -> str:
    """The Markdown report: our numbers beside the paper's Tables 2 and 3, the fidelity
    checks and the paired comparison of the sparse methods against `direct_fc`."""
    groups = aggregate(results)
    lines = [
        "# NPSET paper reproduction",
        "",
        f"{len(results)} runs, {epochs} epochs each. Accuracy in percent on the test split; "
        "*max* is the maximum over epochs (what the paper's Table 2 reports), *final* the "
        "last epoch; mean ± std over seeds.",
        "",
    ]
    checks = fidelity_checks(groups, paper)
    if checks:
        lines += [
            "## Fidelity against the paper",
            "",
            f"Targets: SET and NPSET mean max accuracy within {ACCURACY_POINTS:g} points of "
            f"Table 2; NPSET parameters within {PARAMS_FRACTION:.0%} of Table 3; NPSET neurons "
            "exactly Table 3's on every seed. "
            + "".join(
                f"{d} is also held to the paper's own code on the same split ({v:g}). "
                for d, v in ORIGINAL_CODE_MAX.items()
                if any(c["dataset"] == d for c in checks)
            ),
            "",
            "| dataset | SET max (paper) | ok | NPSET max (paper) | ok | NPSET params (paper) "
            "| ok | neurons exact |",
            "|---|---:|---|---:|---|---:|---|---|",
        ]
        for c in checks:
            params = (
                "–"
                if c["npset_params"] is None
                else f"{_int(c['npset_params'])} ({_int(c['npset_params_paper'])})"
            )
            lines.append(
                f"| {c['dataset']} | {_num(c['set_max'])} ({_num(c['set_paper'])}) | "
                f"{_ok(c['set_ok'])} | {_num(c['npset_max'])} ({_num(c['npset_paper'])}) | "
                f"{_ok(c['npset_ok'])} | {params} | {_ok(c['npset_params_ok'])} | "
                f"{_ok(c['npset_neurons_ok'])} |"
            )
        lines.append("")
        for key, label in (
            ("set_ok", "SET accuracy"),
            ("npset_ok", "NPSET accuracy"),
            ("npset_params_ok", "NPSET parameters"),
            ("npset_neurons_ok", "NPSET neurons"),
        ):
            known = [c[key] for c in checks if c[key] is not None]
            if known:
                lines.append(f"- {label}: within target on {sum(known)} of {len(known)} datasets.")
        lines.append("")
    lines += [
        "## Table 2: test accuracy",
        "",
        "| dataset | method | paper (max) | max | final | seeds |",
        "|---|---|---:|---:|---:|---|",
    ]
    for (dataset, method), g in groups.items():
        paper_acc = paper.get(dataset, {}).get(f"acc_{method}", "") or "–"
        seeds = ",".join(str(s) for s in g["seeds"])
        lines.append(
            f"| {dataset} | {method} | {paper_acc} | {_mean_std(g['max'])} | "
            f"{_mean_std(g['final'])} | {seeds} |"
        )
    paired = paired_against_fc(results)
    if paired:
        lines += [
            "",
            "## Sparse against dense at the same widths (paired by seed)",
            "",
            "The paper's generalisation claim: SET and NPSET beat `direct_fc`, a dense MLP "
            "trained directly at NPSET's final widths. Differences are sparse minus dense, in "
            "points, mean ± std over the seeds both ran; *wins* counts the seeds on which the "
            "sparse method's final accuracy is higher.",
            "",
            "| dataset | method | seeds | max: sparse - dense | final: sparse - dense | wins |",
            "|---|---|---|---:|---:|---:|",
        ]
        for p in paired:
            wins = sum(d > 0 for d in p["final_diff"])
            lines.append(
                f"| {p['dataset']} | {p['method']} | {','.join(map(str, p['seeds']))} | "
                f"{_signed(p['max_diff'])} | {_signed(p['final_diff'])} | "
                f"{wins}/{len(p['seeds'])} |"
            )
    lines += [
        "",
        "## Table 3: parameters and neurons",
        "",
        "Parameters are kernel weights without biases; neurons are input + hidden; "
        "compression = fully connected parameters at the initial widths / parameters.",
        "",
        "| dataset | method | paper params | params | paper neurons | neurons | compression |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (dataset, method), g in groups.items():
        row = paper.get(dataset, {})
        compression = [d / max(p, 1) for d, p in zip(g["dense_params"], g["params"], strict=True)]
        lines.append(
            f"| {dataset} | {method} | {_int(row.get(PAPER_PARAMS.get(method, '')))} | "
            f"{_int(statistics.fmean(g['params']))} | "
            f"{_int(row.get(PAPER_NEURONS.get(method, '')))} | "
            f"{_int(statistics.fmean(g['neurons']))} | {_mean_std(compression, 1)}x |"
        )
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def select_datasets(
    paper: dict[str, dict[str, str]], data_dir: str, requested: list[str] | None
) -> list[str] | None:
    """`requested`, or every paper dataset with a `<name>.mat` in `data_dir`.

    Prints a one-line error and returns None if a name is not a paper dataset or none is left.
    """
    datasets = requested or [n for n in paper if os.path.exists(os.path.join(data_dir, f"{n}.mat"))]
    unknown = [n for n in datasets if n not in paper]
    if unknown or not datasets:
        print(
            f"error: datasets must be among {', '.join(paper)}. Received: datasets={unknown}",
            file=sys.stderr,
        )
        return None
    return datasets


def plan_order(
    args: argparse.Namespace, found: list[tuple[str, str]]
) -> list[tuple[int, str, str, str]]:
    """(seed, dataset, path, method) in the order runs start.

    Seed-major, so an interrupted grid has every dataset and method for the first seeds;
    `dense` (the full FC-MLP, by far the largest runs) gets `--dense-seeds` and goes last.
    """
    dense_seeds = args.dense_seeds if args.dense_seeds is not None else args.seeds[:1]
    sparse = [m for m in args.methods if m != "dense"]
    order = [(s, n, p, m) for s in args.seeds for n, p in found for m in sparse]
    if "dense" in args.methods:
        order += [(s, n, p, "dense") for s in dense_seeds for n, p in found]
    return order


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="folder with scikit-feature <name>.mat (required to train)")
    p.add_argument(
        "--collect",
        nargs="+",
        metavar="JSON",
        help="only merge the JSON outputs of earlier invocations into one report (no training)",
    )
    p.add_argument("--datasets", nargs="+", help="default: every paper dataset found in DIR")
    p.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--dense-seeds",
        nargs="+",
        type=int,
        help="seeds for the 'dense' FC-MLP (the largest runs); default: the first of --seeds",
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", required=True, help="Markdown report; JSON goes beside it")
    p.add_argument("--runs-dir", default="runs/reproduce", help="where run folders go")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs with the same config (always done now; kept for old commands)",
    )
    p.add_argument("--workers", type=int, default=0, help="train N runs at a time, in processes")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


def collect(paths: list[str], out: str, paper: dict[str, dict[str, str]]) -> str:
    """One report from the JSON outputs of several invocations (or earlier collections).

    A run (dataset, method, seed, epochs) found in more than one input is taken from
    the last input that holds it, so a rerun replaces an earlier result. Each result
    keeps the name of the file it came from (`source`).
    """
    from keras_npset.experiments import run as run_lib

    by_run: dict[tuple, dict[str, Any]] = {}
    notes: list[str] = []
    replaced = 0
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        default_epochs = part.get("args", {}).get("epochs")
        for result in part["results"]:
            result = {"source": os.path.basename(path), **result}
            epochs = result.get("epochs", default_epochs)
            key = (result["dataset"], result["method"], result["seed"], epochs)
            replaced += key in by_run
            by_run[key] = result
        notes += [n for n in part.get("notes", []) if n not in notes]
    if replaced:
        note = f"{replaced} runs were in more than one input; the last input's result is used."
        notes.append(note)
    results = list(by_run.values())
    counts: dict[str, int] = {}
    for r in results:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    notes = [n for n in notes if not n.startswith("Runs per input")]
    if len(counts) > 1:
        notes.append(
            "Runs per input (`source` in the JSON): "
            + ", ".join(f"{name} {n}" for name, n in counts.items())
            + "."
        )
    epochs = {r.get("epochs") for r in results}
    report = markdown_report(
        results, paper, "/".join(str(e) for e in sorted(e for e in epochs if e)), notes
    )
    run_lib.write_text(out, report)
    run_lib.write_json(
        os.path.splitext(out)[0] + ".json",
        {"collected": [os.path.basename(p) for p in paths], "results": results, "notes": notes},
    )
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paper = read_paper_tables()
    if args.collect:
        try:
            print(collect(args.collect, args.out, paper))
        except (OSError, ValueError, KeyError) as e:
            print(f"error: cannot collect reports: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.data_dir:
        print("error: --data-dir is required unless --collect is given", file=sys.stderr)
        return 2
    datasets = select_datasets(paper, args.data_dir, args.datasets)
    if datasets is None:
        return 2
    plan, notes = [], []
    found = []
    for name in datasets:
        path = os.path.join(args.data_dir, f"{name}.mat")
        if os.path.exists(path):
            found.append((name, path))
        else:
            notes.append(f"{name}: {path} not found, skipped.")
    for seed, name, path, method in plan_order(args, found):
        run_dir = os.path.join(args.runs_dir, name, method, f"seed{seed}")
        overrides = [
            f"data.path={json.dumps(path)}",
            f"model.method={method}",
            f"train.seed={seed}",
            f"train.epochs={args.epochs}",
            f"output.dir={json.dumps(run_dir)}",
            "train.verbose=0",
            *args.overrides,
        ]
        try:  # every config is checked before the first (long) run starts
            plan.append(load_config(os.path.join(ROOT, "configs", f"{name}.toml"), overrides))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    cfg = plan[-1] if plan else None
    if cfg is not None and cfg.model.start + cfg.model.prune_epochs >= args.epochs:
        notes.append(
            f"{args.epochs} epochs end before the pruning schedule (epochs {cfg.model.start}.."
            f"{cfg.model.start + cfg.model.prune_epochs}) does: NPSET widths stay larger "
            "than Table 3's."
        )

    from keras_npset.experiments import run as run_lib

    def write(results: list[dict[str, Any]]) -> str:
        report = markdown_report(results, paper, args.epochs, notes)
        run_lib.write_text(args.out, report)
        run_lib.write_json(
            os.path.splitext(args.out)[0] + ".json",
            {"args": vars(args), "results": results, "notes": notes},
        )
        return report

    from keras_npset.experiments import sweep

    # Finished runs are reused, killed ones resume, a folder of another config is moved
    # aside; see keras_npset.experiments.sweep.
    done: dict[int, dict[str, Any]] = {}

    def ended(i: int, outcome: sweep.Outcome) -> None:
        if outcome.status == "failed":
            notes.append(f"{outcome.run.name} failed: {outcome.error}")
        else:
            done[i] = outcome.results
        write([done[k] for k in sorted(done)])  # so a long reproduction can be read while it runs

    try:
        with sweep.stop_on_sigterm():
            grid = sweep.run_grid(
                [sweep.Run(cfg) for cfg in plan],
                workers=args.workers,
                ray=args.ray,
                move_aside=True,
                on_result=ended,
            )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if grid.interrupted:
        return 130
    report = write(grid.results)
    print(report)
    return 1 if grid.failures else 0


if __name__ == "__main__":
    sys.exit(main())
