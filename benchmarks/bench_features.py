"""Feature selection from sparse connectivity against standard filters, with an SVM.

For every shared dataset (`<data-dir>/<name>.mat` with a `configs/<name>.toml`),
every seed and k in {25, 50, 100, 200}: the test accuracy (percent) of one
fixed classifier, scikit-learn's `SVC()` with its defaults (RBF kernel, C=1),
trained on the top-k features of

- `set`: `keras_npset.feature_ranking` of a trained SET-MLP (`--criterion`,
  by default the library's default, path strength),
- `npset`: the same for an NPSET run,
- `set_strength`: the SET run ranked by QuickSelection's first-layer
  strength instead (`criterion="strength"`), to compare the criteria,
- `input_pruning`: a SET run with `InputPruning` (`model.input_k` = the
  largest k that fits the dataset); smaller k take the top of its ranking of
  the survivors, so one input-pruning run per dataset and seed serves all k,
- `f_classif`: `SelectKBest(f_classif, k=k)`,
- `mutual_info`: the top k of `mutual_info_classif(random_state=seed)`,
- `random`: k features drawn with `numpy.random.default_rng(seed)`,
- `all`: every feature (the same for every k).

Every method of a (dataset, seed) uses that run's own split (the paper's
2/3 - 1/3 split from the run config's seed, standardised with the training
statistics); filters and the SVM see only the training part. Runs come from
`--runs` (`<runs>/<dataset>/<method>/seed<k>/`, as the paper reproduction
writes them) or, with `--train`, are trained into `--work-dir` with the
dataset's config (extra `--set KEY=VALUE` overrides are recorded in the
results). The input-pruning runs are always trained here (into `--work-dir`),
with the SET run's config when there is one.

Results accumulate in `benchmarks/results/bench_features.json`: entries that
are there are skipped (`--force` recomputes), so the script can be re-run as
runs land. It also measures, once, that input pruning physically shrinks the
first layer's work: its input width and nnz before and after pruning to the
largest k, and the median time of a predict call and of a training step of
the same network before and after, interleaved in one process.

Usage:

    python -m benchmarks.bench_features --data-dir /work/shared/datasets \\
        --runs /work/meas/repro
    python -m benchmarks.bench_features --data-dir DIR --datasets Prostate_GE --train
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

KS = (25, 50, 100, 200)
SEEDS = (0, 1, 2)
DATASETS = (
    "lung_discrete",
    "Yale",
    "leukemia",
    "Prostate_GE",
    "orlraws10P",
    "madelon",
    "PCMAC",
    "RELATHE",
)
LIBRARY = ("set", "npset", "input_pruning", "set_strength")
BASELINES = ("f_classif", "mutual_info", "random", "all")
METHODS = LIBRARY + BASELINES
# NeuroFS (Atashgahi et al., TMLR 2023), SVM on the selected features.
NEUROFS = {("Prostate_GE", 50): 90.50, ("arcene", 50): 76.50}
RESULTS = os.path.join(common.RESULTS_DIR, "bench_features.json")


def _load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"entries": {}, "shrink": None}


def _save(results, path):
    from keras_npset.experiments.run import write_json

    write_json(path, results)


def _complete(folder):
    return folder is not None and all(
        os.path.exists(os.path.join(folder, name)) for name in ("results.json", "model.keras")
    )


def _config(args, name, method, seed, out, base=None, extra=()):
    from keras_npset.experiments.config import config_from_dict, load_config

    overrides = [
        f"model.method={method}",
        f"train.seed={seed}",
        f'output.dir="{out}"',
        "train.verbose=0",
        "output.tensorboard=false",
        *args.set,
        *extra,
    ]
    if base is not None:  # the SET run's own config, so the split and settings match
        cfg = config_from_dict(base)
        from keras_npset.experiments.config import apply_override, validate

        for override in overrides:
            apply_override(cfg, override)
        validate(cfg)
        return cfg
    path = os.path.join(args.data_dir, f"{name}.mat")
    return load_config(
        os.path.join(ROOT, "configs", f"{name}.toml"), [f'data.path="{path}"', *overrides]
    )


def _train(cfg, log):
    from keras_npset.experiments import run as run_lib

    log(f"  training {cfg.model.method} (input_k={cfg.model.input_k}) -> {cfg.output.dir}")
    run_lib.run(cfg, resume=True, log=None)


def find_run(args, name, method, seed, log):
    """The folder of a finished run of `method`, trained here if `--train`; else None."""
    if args.runs:
        repro = os.path.join(args.runs, name, method, f"seed{seed}")
        if _complete(repro):
            return repro
    own = os.path.join(args.work_dir, name, method, f"seed{seed}")
    if _complete(own):
        return own
    if args.train:
        _train(_config(args, name, method, seed, own), log)
        return own
    return None


def input_pruning_run(args, name, seed, k, set_folder, log):
    own = os.path.join(args.work_dir, name, f"input_pruning_{args.criterion}_k{k}", f"seed{seed}")
    if _complete(own):
        return own
    if args.no_input_pruning_training:
        return None
    base = None
    if set_folder is not None:
        with open(os.path.join(set_folder, "config.json")) as f:
            base = json.load(f)["config"]
    cfg = _config(
        args,
        name,
        "set",
        seed,
        own,
        base=base,
        extra=[f"model.input_k={k}", f"model.feature_criterion={args.criterion}"],
    )
    _train(cfg, log)
    return own


def run_ranking(folder, criterion):
    """The run's ranking by `criterion`: its features.json if made with it, else model.keras's."""
    features = os.path.join(folder, "features.json")
    if os.path.exists(features):
        with open(features) as f:
            report = json.load(f)
        if report.get("criterion", "strength") == criterion:
            return np.asarray(report["ranking"])
    import keras_npset

    model = keras_npset.load_model(os.path.join(folder, "model.keras"))
    return keras_npset.feature_ranking(model, criterion)


def run_dataset(folder, seed):
    from keras_npset.experiments import data
    from keras_npset.experiments.config import config_from_dict

    with open(os.path.join(folder, "config.json")) as f:
        cfg = config_from_dict(json.load(f)["config"])
    return cfg.data, data.load_from_config(cfg.data, seed)


def svm_accuracy(dataset, columns) -> float:
    from sklearn.svm import SVC

    columns = np.asarray(columns)
    clf = SVC().fit(dataset.x_train[:, columns], dataset.y_train)
    return round(100.0 * float(clf.score(dataset.x_test[:, columns], dataset.y_test)), 4)


def baseline_columns(method, dataset, k, seed):
    from sklearn.feature_selection import SelectKBest, f_classif

    n = dataset.n_features
    if method == "all":
        return np.arange(n)
    if method == "random":
        return np.random.default_rng(seed).permutation(n)[:k]
    if method == "f_classif":
        import warnings

        with warnings.catch_warnings():  # constant columns of a split score NaN, ranked last
            warnings.simplefilter("ignore", (UserWarning, RuntimeWarning))
            selector = SelectKBest(f_classif, k=k).fit(dataset.x_train, dataset.y_train)
        return selector.get_support(True)
    raise ValueError(method)


def evaluate(args, name, seed, results, log):
    entries = results["entries"]
    set_folder = find_run(args, name, "set", seed, log)
    folders = {
        "set": set_folder,
        "set_strength": set_folder,
        "npset": find_run(args, name, "npset", seed, log),
    }
    criteria = {method: args.criterion for method in LIBRARY}
    criteria["set_strength"] = "strength"
    if set_folder is None and not os.path.exists(os.path.join(args.data_dir, f"{name}.mat")):
        return
    if set_folder is not None:
        data_cfg, dataset = run_dataset(set_folder, seed)
    else:
        cfg = _config(args, name, "set", seed, os.path.join(args.work_dir, "unused"))
        from keras_npset.experiments import data

        data_cfg, dataset = cfg.data, data.load_from_config(cfg.data, seed)
    ks = [k for k in args.ks if k < dataset.n_features]
    if not ks:
        return
    folders["input_pruning"] = input_pruning_run(args, name, seed, max(ks), set_folder, log)
    split = np.concatenate([dataset.train_index, dataset.test_index]).tolist()

    def done(method):
        entry = entries.get(f"{name}/{seed}/{method}")
        return entry is not None and all(str(k) in entry["accuracy"] for k in ks)

    for method in METHODS:
        key = f"{name}/{seed}/{method}"
        if done(method) and not args.force:
            continue
        entry = {"accuracy": {}, "n_features": dataset.n_features}
        if method in LIBRARY:
            folder = folders[method]
            if folder is None:
                continue
            _, own = run_dataset(folder, seed)
            own_split = np.concatenate([own.train_index, own.test_index]).tolist()
            if own_split != split:
                log(f"  {key}: the run's split differs from the SET run's; skipped")
                continue
            ranking = run_ranking(folder, criteria[method])
            entry["source"] = folder
            entry["criterion"] = criteria[method]
            if method == "input_pruning":
                entry["pruned_to"] = max(ks)
            for k in ks:
                entry["accuracy"][str(k)] = svm_accuracy(dataset, ranking[:k])
        elif method == "mutual_info":
            from sklearn.feature_selection import mutual_info_classif

            start = time.perf_counter()
            scores = mutual_info_classif(dataset.x_train, dataset.y_train, random_state=seed)
            ranking = np.lexsort((np.arange(scores.size), -scores))
            entry["seconds"] = round(time.perf_counter() - start, 2)
            for k in ks:
                entry["accuracy"][str(k)] = svm_accuracy(dataset, ranking[:k])
        else:
            for k in ks:
                entry["accuracy"][str(k)] = svm_accuracy(
                    dataset, baseline_columns(method, dataset, k, seed)
                )
        entry["data"] = {"path": data_cfg.path, "train_fraction": data_cfg.train_fraction}
        entries[key] = entry
        log(f"  {key}: {entry['accuracy']}")
        _save(results, args.output)


def measure_shrink(args, results, log):
    """First-layer width, nnz and timings before/after pruning inputs to the largest k."""
    if results.get("shrink", {}) and "first_layer_speedup" in results["shrink"]:
        if not args.force:
            return
    name = args.shrink_dataset
    if not os.path.exists(os.path.join(args.data_dir, f"{name}.mat")):
        return
    import keras

    from keras_npset import features, surgery
    from keras_npset.experiments import data
    from keras_npset.experiments import run as run_lib

    out = os.path.join(args.work_dir, "unused")
    cfg = _config(args, name, "set", 0, out, extra=["model.input_k=1"])
    dataset = data.load_from_config(cfg.data, 0)
    ks = [k for k in args.ks if k < dataset.n_features]
    if not ks:
        return
    k = max(ks)
    widths = [int(h) for h in cfg.model.hidden]
    full = run_lib.compiled_model(cfg, dataset, widths)
    pruned = run_lib.compiled_model(cfg, dataset, widths)
    selection, layer = features._input_link(pruned)
    before = {"input_dim": layer.input_dim, "nnz": layer.nnz}
    keep = np.sort(features.rank(features._row_scores(layer, "strength"))[:k])
    features.remove_inputs(selection, layer, keep, pruned.optimizer)
    surgery.refresh_model(pruned)
    after = {"input_dim": layer.input_dim, "nnz": layer.nnz}
    x, n_classes = dataset.x_test, dataset.n_classes
    batch = cfg.train.batch_size
    xb = dataset.x_train[:batch]
    yb = keras.utils.to_categorical(dataset.y_train[:batch], n_classes)

    def predict_time(model):
        start = time.perf_counter()
        model.predict_on_batch(x)
        return time.perf_counter() - start

    def step_time(model, steps=20):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(xb, yb)
        return (time.perf_counter() - start) / steps

    # The first layer on its own (FeatureSelection + hidden_1), forward on the test set.
    first = {
        tag: keras.Model(model.inputs, model.get_layer("hidden_1").output)
        for tag, model in (("full", full), ("pruned", pruned))
    }
    times = {
        tag: {"predict": [], "step": [], "first_layer_predict": []} for tag in ("full", "pruned")
    }
    for tag, model in (("full", full), ("pruned", pruned)):  # trace outside the clock
        predict_time(model)
        step_time(model, 2)
        predict_time(first[tag])
    for _ in range(args.repeats):
        for tag, model in (("full", full), ("pruned", pruned)):
            times[tag]["predict"].append(predict_time(model))
            times[tag]["step"].append(step_time(model))
            times[tag]["first_layer_predict"].append(predict_time(first[tag]))
    med = {t: {w: statistics.median(v) for w, v in d.items()} for t, d in times.items()}
    results["shrink"] = {
        "dataset": name,
        "k": k,
        "hidden": widths,
        "first_layer_before": before,
        "first_layer_after": after,
        "predict_batch": len(x),
        "train_batch": batch,
        "median_seconds": med,
        "predict_speedup": med["full"]["predict"] / med["pruned"]["predict"],
        "train_step_speedup": med["full"]["step"] / med["pruned"]["step"],
        "first_layer_speedup": med["full"]["first_layer_predict"]
        / med["pruned"]["first_layer_predict"],
        "repeats": args.repeats,
        "note": "same network (same seed) before and after removing the weakest inputs, "
        "timed interleaved in one process; the whole model's predict and train step",
    }
    log(f"  shrink: {results['shrink']}")
    _save(results, args.output)


def _cell(values):
    if not values:
        return "-"
    mean = float(np.mean(values))
    std = float(np.std(values))
    n = "" if len(values) == len(SEEDS) else f" (n={len(values)})"
    return f"{mean:.2f} +- {std:.2f}{n}"


def table(results, ks=KS) -> str:
    entries = results["entries"]
    by = {}
    for key, entry in entries.items():
        name, seed, method = key.split("/")
        for k, acc in entry["accuracy"].items():
            by.setdefault((name, int(k), method), []).append(acc)
    names = [n for n in DATASETS if any(key[0] == n for key in by)]
    names += sorted({key[0] for key in by} - set(names))
    header = ["dataset", "k", *METHODS, "NeuroFS"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    means = {}
    for name in names:
        for k in ks:
            if not any((name, k, m) in by for m in METHODS):
                continue
            row = [name, str(k)]
            for method in METHODS:
                values = by.get((name, k, method), [])
                row.append(_cell(values))
                if values:
                    means.setdefault((k, method), {})[name] = float(np.mean(values))
            published = NEUROFS.get((name, k))
            row.append(f"{published:.2f}" if published else "")
            lines.append("| " + " | ".join(row) + " |")
    summary = [
        "",
        "Mean over the datasets that have every method at that k (`best library` = per "
        "dataset the highest of set / npset / input_pruning / set_strength, a choice made "
        "after seeing the test accuracies, so optimistic):",
        "",
        "| k | " + " | ".join(METHODS) + " | best library | datasets |",
        "|---|" + "---|" * (len(METHODS) + 2),
    ]
    for k in ks:
        complete = [n for n in names if all(n in means.get((k, m), {}) for m in METHODS)]
        if not complete:
            continue
        cells = [f"{np.mean([means[(k, m)][n] for n in complete]):.2f}" for m in METHODS]
        best = np.mean([max(means[(k, m)][n] for m in LIBRARY) for n in complete])
        summary.append(f"| {k} | " + " | ".join(cells) + f" | {best:.2f} | {', '.join(complete)} |")
    shrink = results.get("shrink")
    if shrink:
        b, a = shrink["first_layer_before"], shrink["first_layer_after"]
        med = shrink["median_seconds"]
        summary += [
            "",
            f"Input pruning on {shrink['dataset']} (hidden {shrink['hidden']}) to "
            f"k = {shrink['k']}: first layer input width {b['input_dim']} -> {a['input_dim']}, "
            f"nnz {b['nnz']} -> {a['nnz']}; predict on {shrink['predict_batch']} samples "
            f"{1000 * med['full']['predict']:.1f} -> {1000 * med['pruned']['predict']:.1f} ms "
            f"({shrink['predict_speedup']:.2f}x), train step (batch {shrink['train_batch']}) "
            f"{1000 * med['full']['step']:.2f} -> {1000 * med['pruned']['step']:.2f} ms "
            f"({shrink['train_step_speedup']:.2f}x); the first layer alone, forward: "
            f"{1000 * med['full']['first_layer_predict']:.2f} -> "
            f"{1000 * med['pruned']['first_layer_predict']:.2f} ms "
            f"({shrink['first_layer_speedup']:.2f}x); medians of {shrink['repeats']} "
            "interleaved rounds.",
        ]
    note = (
        "SVC() (RBF, C=1) test accuracy in percent, mean +- std over seeds (n = seeds where "
        "fewer than 3). input_pruning: one run per dataset and seed pruned to the largest k; "
        "smaller k use the top of its ranking of the survivors. set, npset and input_pruning "
        f"rank by `{results.get('settings', {}).get('criterion', 'path')}`, set_strength by "
        "first-layer strength."
    )
    return "\n".join([note, "", *lines, *summary]) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="/work/shared/datasets")
    parser.add_argument(
        "--runs", default=None, help="run folders <runs>/<dataset>/<method>/seed<k>"
    )
    parser.add_argument(
        "--work-dir",
        default=os.path.join(ROOT, "runs", "bench_features"),
        help="where runs trained here go",
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--ks", nargs="*", type=int, default=list(KS))
    parser.add_argument("--train", action="store_true", help="train missing set/npset runs")
    parser.add_argument(
        "--no-input-pruning-training",
        action="store_true",
        help="do not train missing input-pruning runs (they are trained by default)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--force", action="store_true", help="recompute existing entries")
    parser.add_argument(
        "--criterion",
        default="path",
        choices=["path", "strength", "degree"],
        help="how the library ranks features (keras_npset.feature_importance)",
    )
    parser.add_argument("--shrink-dataset", default="Prostate_GE")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--table-only", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from keras_npset.experiments.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    results = _load(args.output)
    results["settings"] = {
        "classifier": "sklearn.svm.SVC() defaults (RBF, C=1, gamma='scale')",
        "ks": list(args.ks),
        "criterion": args.criterion,
        "extra_overrides": list(args.set),
    }
    log = print
    if not args.table_only:
        if not args.no_shrink:
            measure_shrink(args, results, log)
        for name in args.datasets:
            for seed in args.seeds:
                log(f"{name} seed {seed}")
                evaluate(args, name, seed, results, log)
        _save(results, args.output)
    text = table(results, args.ks)
    print(text)
    from keras_npset.experiments.run import write_text

    write_text(os.path.splitext(args.output)[0] + ".md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
