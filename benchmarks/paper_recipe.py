"""Which settings reproduce the paper: the NPSET pruning criterion and the initial weights.

The paper leaves two choices of its code unstated that change its tables:

- **criterion**: which connections count when NPSET picks the neurons to remove
  (`model.criterion`: `out`, `total`, `in`). Measured by the parameters left after
  the last pruning event (epoch 50) against Table 3, NPSET seed 0, 51 epochs.
- **initialisation**: N(0, 1)/10 as the original code (`set_normal`) or Glorot over
  the sparse fans (`glorot_uniform`). Measured by SET's mean max / final test accuracy
  over seeds 0-2, 100 epochs, against Table 2.

Both studies use every other setting of the paper configs (`configs/<dataset>.toml`),
the paper's loss included. Run folders go to `--runs-dir/<variant>/<dataset>/<method>/
seed<k>`; a finished run with the same config is reused, so the command continues an
interrupted study. Runs go through `keras_npset.experiments.sweep`, so `--workers N` trains N at a
time and `--ray ADDRESS` on a Ray cluster. Example:

    python -m benchmarks.paper_recipe --data-dir /path/to/scikit-feature \\
        --runs-dir runs/recipe --workers 2

writes `benchmarks/results/paper_recipe.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks import reproduce_paper as rp  # noqa: E402
from keras_npset.experiments.config import ConfigError, load_config  # noqa: E402

CRITERIA = ("out", "total", "in")
INITIALIZERS = ("set_normal", "glorot_uniform")
PRUNING_EPOCHS = 51  # the last pruning event is at the beginning of epoch 50
RESULTS = os.path.join(ROOT, "benchmarks", "results", "paper_recipe")


STUDIES = ("criterion", "init")


def plan(
    datasets: list[str],
    data_dir: str,
    runs_dir: str,
    seeds: list[int],
    studies: tuple[str, ...] = STUDIES,
    extra: tuple[str, ...] = (),
):
    """(study, variant, dataset, config) for every run of the chosen studies.

    `extra` overrides (`KEY=VALUE`) apply to every run, before each study's own.
    """
    runs = []
    for name in datasets:
        base = [
            f"data.path={json.dumps(os.path.join(data_dir, f'{name}.mat'))}",
            "train.verbose=0",
            "output.tensorboard=false",
            "output.save_model=false",
            *extra,
        ]
        config = os.path.join(ROOT, "configs", f"{name}.toml")
        for criterion in CRITERIA if "criterion" in studies else ():
            out = os.path.join(runs_dir, f"crit_{criterion}", name, "npset", "seed0")
            overrides = [
                *base,
                "model.method=npset",
                f"model.criterion={criterion}",
                f"train.epochs={PRUNING_EPOCHS}",
                "train.seed=0",
                f"output.dir={json.dumps(out)}",
            ]
            runs.append(("criterion", criterion, name, load_config(config, overrides)))
        for init in INITIALIZERS if "init" in studies else ():
            for seed in seeds:
                out = os.path.join(runs_dir, f"init_{init}", name, "set", f"seed{seed}")
                overrides = [
                    *base,
                    "model.method=set",
                    f"model.kernel_initializer={init}",
                    f"train.seed={seed}",
                    f"output.dir={json.dumps(out)}",
                ]
                runs.append(("init", init, name, load_config(config, overrides)))
    return runs


def params_after_pruning(result: dict[str, Any]) -> int:
    """Parameters (no biases) logged at the end of epoch 50, after the last pruning event."""
    return int(result["history"]["params/total"][PRUNING_EPOCHS - 1])


def _complete(cfg) -> bool:
    from keras_npset.experiments import run_dir

    try:
        return os.path.isdir(cfg.output.dir) and run_dir.inspect(cfg.output.dir, cfg) == "complete"
    except ValueError:  # a run of another config
        return False


def report(rows: list[dict[str, Any]], paper: dict[str, dict[str, str]]) -> str:
    """Markdown tables of both studies beside Tables 2 and 3."""
    lines = [
        "# Which settings reproduce the paper",
        "",
        "## NPSET pruning criterion: parameters after the last pruning event (seed 0)",
        "",
        "| dataset | Table 3 | " + " | ".join(CRITERIA) + " |",
        "|---|---:|" + "---:|" * len(CRITERIA),
    ]
    crit = {(r["dataset"], r["variant"]): r for r in rows if r["study"] == "criterion"}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        target = float(paper[dataset]["npset_params"])
        cells = []
        for c in CRITERIA:
            r = crit.get((dataset, c))
            cells.append(
                "–" if r is None else f"{r['params']:,} ({100 * (r['params'] / target - 1):+.1f}%)"
            )
        lines.append(f"| {dataset} | {round(target):,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Initial weights: SET mean max / final test accuracy (seeds as listed)",
        "",
        "| dataset | Table 2 | " + " | ".join(INITIALIZERS) + " | seeds |",
        "|---|---:|" + "---:|" * len(INITIALIZERS) + "---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cells, seeds = [], set()
        for init in INITIALIZERS:
            got = [
                r
                for r in rows
                if (r["study"], r["dataset"], r["variant"]) == ("init", dataset, init)
            ]
            seeds |= {r["seed"] for r in got}
            cells.append(
                "–"
                if not got
                else f"{statistics.fmean(r['max'] for r in got):.2f} / "
                f"{statistics.fmean(r['final'] for r in got):.2f}"
            )
        lines.append(
            f"| {dataset} | {paper[dataset]['acc_set']} | "
            + " | ".join(cells)
            + f" | {','.join(map(str, sorted(seeds)))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with scikit-feature <name>.mat")
    p.add_argument("--datasets", nargs="+", help="default: every paper dataset found in DIR")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="of the init study")
    p.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES))
    p.add_argument("--runs-dir", default="runs/recipe")
    p.add_argument("--collect-only", action="store_true", help="report finished runs, train none")
    p.add_argument("--workers", type=int, default=0, help="train N runs at a time, in processes")
    p.add_argument("--ray", help="train on a Ray cluster: 'local' or its address")
    p.add_argument("--out", default=RESULTS, help="results path without extension")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run (e.g. train.weight_decay=0.0002)",
    )
    args = p.parse_args(argv)
    paper = rp.read_paper_tables()
    datasets = rp.select_datasets(paper, args.data_dir, args.datasets)
    if datasets is None:
        return 2
    try:
        runs = plan(
            datasets,
            args.data_dir,
            args.runs_dir,
            args.seeds,
            tuple(args.studies),
            tuple(args.overrides),
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from keras_npset.experiments import run as run_lib
    from keras_npset.experiments import sweep

    rows: list[dict[str, Any]] = []

    def ended(i: int, outcome) -> None:
        study, variant, dataset, cfg = runs[i]
        if outcome.results is None:
            return
        result = outcome.results
        row = {
            "study": study,
            "variant": variant,
            "dataset": dataset,
            "seed": cfg.train.seed,
            "max": result["max_test_accuracy"],
            "final": result["final_test_accuracy"],
        }
        if study == "criterion":
            row["params"] = params_after_pruning(result)
            row["neurons"] = result["neurons"]
        rows.append(row)
        rows.sort(
            key=lambda r: (
                [(s, v, d) for s, v, d, _ in runs].index((r["study"], r["variant"], r["dataset"]))
                * 100
                + r["seed"]
            )
        )
        run_lib.write_text(args.out + ".md", report(rows, paper))
        run_lib.write_json(args.out + ".json", {"runs_dir": args.runs_dir, "rows": rows})

    todo = runs
    if args.collect_only:
        todo = [r for r in runs if _complete(r[3])]
    try:
        grid = sweep.run_grid(
            [
                sweep.Run(cfg, {"study": study, "variant": variant, "dataset": name})
                for study, variant, name, cfg in todo
            ],
            workers=args.workers,
            ray=args.ray,
            on_result=lambda i, outcome: ended(runs.index(todo[i]), outcome),
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if grid.interrupted:
        return 130
    print(report(rows, paper) if rows else "no finished runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
