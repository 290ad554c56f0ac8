"""What an output folder holds, and safe ways to reuse it (resume, refuse, move aside).

`train.py` uses these before training so that re-running a command never
mixes two runs or destroys a result:

- `inspect(out, cfg)` says whether `out` is new, holds a resumable run of
  the *same* config (`"resume"`), or a finished one (`"complete"`); it
  raises `ValueError` (one line) if `out` holds another run.
- `lock(out)` takes an exclusive lock on the folder, so two processes never
  write into it at once (released by the kernel when the process dies).
- `move_aside(out)` renames the folder to `<out>.old-<timestamp>` (for `--fresh`).
- `remove_stale_temporaries(out)` removes temporary files a killed process left.

The checkpoint lives in `<out>/checkpoint` (see `keras_npset.checkpoint`).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from typing import Any

from keras_npset.experiments.config import Config, config_to_dict

CHECKPOINT_SUBDIR = "checkpoint"
# Keys that change where or how loudly a run reports, or how its steps are dispatched,
# not what it computes: `train.steps_per_execution` trains the same steps to the same
# weights (tests/test_run.py), so a run may resume, or be reused, under another value
# (its default changed from 32 to 4096).
OUTPUT_ONLY_KEYS = (
    "output.dir",
    "output.tensorboard",
    "output.save_model",
    "train.verbose",
    "train.steps_per_execution",
)
# Temporary names of run._atomic_path (".<name>.<random>") and of
# checkpoint.save_training_state ("tmp-<pid>-<name>").
_ATOMIC_NAMES = ("config.json", "results.json", "model.keras")


def _flat(tables: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for section, body in tables.items():
        if isinstance(body, dict):
            flat.update({f"{section}.{k}": v for k, v in body.items()})
        else:
            flat[section] = body
    return flat


def config_differences(saved: dict[str, Any], cfg: Config) -> list[str]:
    """Keys whose value differs between a saved `config_to_dict` and `cfg` (output keys ignored)."""
    # A JSON round trip gives the current config the types the saved one has.
    now = _flat(json.loads(json.dumps(config_to_dict(cfg))))
    # A key the saved config lacks did not exist in the version that wrote it, which
    # behaved as the key's default does: compare it as that default.
    defaults = _flat(json.loads(json.dumps(config_to_dict(Config()))))
    before = _flat(saved)
    before.update({k: v for k, v in defaults.items() if k not in before})
    keys = sorted((set(now) | set(before)) - set(OUTPUT_ONLY_KEYS))
    return [
        f"{k}: {before.get(k, '<missing>')!r} -> {now.get(k, '<missing>')!r}"
        for k in keys
        if before.get(k, "<missing>") != now.get(k, "<missing>")
    ]


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"Cannot read {what} ({type(e).__name__}: {e}); use --fresh to move the folder "
            f"aside. Received: path={path!r}"
        ) from None


def has_checkpoint(out: str) -> bool:
    return os.path.isfile(os.path.join(out, CHECKPOINT_SUBDIR, "checkpoint.json"))


def dataset_info(dataset) -> dict[str, Any]:
    """The `dataset` entry of config.json for a `keras_npset.experiments.data.Dataset`."""
    return {
        "name": dataset.name,
        "n_train": len(dataset.y_train),
        "n_test": len(dataset.y_test),
        "n_features": dataset.n_features,
        "n_classes": dataset.n_classes,
    }


def inspect(out: str, cfg: Config, dataset=None) -> str:
    """`"new"`, `"resume"` or `"complete"` for running `cfg` into folder `out`.

    Args:
        out: the output folder.
        cfg: the config about to run.
        dataset: the loaded `Dataset`; if given, its sizes must match the saved
            run's too (the same config can point at a data file that changed).
            Defaults to `None`.

    Raises:
        ValueError: if `out` holds a run of a different config or data, or results
            or a checkpoint without the `config.json` that says which run they
            belong to.
    """
    config_file = os.path.join(out, "config.json")
    results_file = os.path.join(out, "results.json")
    has_results = os.path.isfile(results_file)
    has_ckpt = has_checkpoint(out)
    if not os.path.isfile(config_file):
        if has_results or has_ckpt:
            what = "results.json" if has_results else "a checkpoint"
            raise ValueError(
                f"output.dir holds {what} but no config.json, so it cannot be checked against "
                f"this config; use --fresh to move it aside or choose another output.dir. "
                f"Received: output.dir={out!r}"
            )
        return "new"
    saved = _read_json(config_file, "config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(
            f"config.json in output.dir is not a run's config; use --fresh to move the folder "
            f"aside. Received: output.dir={out!r}"
        )
    differences = config_differences(saved["config"], cfg)
    if dataset is not None and saved.get("dataset", {}) != dataset_info(dataset):
        differences.append(f"data {saved.get('dataset')} -> {dataset_info(dataset)}")
    if differences:
        shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
        raise ValueError(
            f"output.dir holds a run with a different config or data ({shown}); re-run with its "
            f"config to resume, use --fresh to move it aside, or choose another output.dir. "
            f"Received: output.dir={out!r}"
        )
    if has_results:
        results = _read_json(results_file, "results.json")
        if isinstance(results, dict) and len(results.get("test_accuracy", [])) == cfg.train.epochs:
            return "complete"
        raise ValueError(
            f"results.json in output.dir is not a complete run of {cfg.train.epochs} epochs; "
            f"use --fresh to move it aside. Received: output.dir={out!r}"
        )
    return "resume" if has_ckpt else "new"


def check_writable(out: str) -> None:
    """Creates `out` if needed and checks a file can be created in it (raises OSError)."""
    os.makedirs(out, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
    os.close(fd)
    os.remove(probe)


def lock(out: str) -> int:
    """Takes an exclusive lock on folder `out`; returns the descriptor that holds it.

    Raises:
        ValueError: if another process holds it.
    """
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(
            f"Another process is writing to output.dir. Received: output.dir={out!r}"
        ) from None
    return fd


def is_empty(out: str) -> bool:
    return not os.path.isdir(out) or not os.listdir(out)


def move_aside(out: str) -> str:
    """Renames folder `out` to `<out>.old-<timestamp>[-n]`; returns the new name."""
    base = f"{os.path.normpath(out)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = base, 1
    while os.path.exists(target):
        target, n = f"{base}-{n}", n + 1
    os.rename(out, target)
    return target


def remove_stale_temporaries(out: str) -> list[str]:
    """Removes temporary files of interrupted atomic writes in `out` and its checkpoint.

    Only safe while holding `lock(out)`: a live writer's temporaries look the same.

    Returns:
        The removed paths.
    """
    removed = []
    ckpt = os.path.join(out, CHECKPOINT_SUBDIR)
    candidates = [
        os.path.join(out, name)
        for name in (os.listdir(out) if os.path.isdir(out) else [])
        if any(name.startswith(f".{base}.") for base in _ATOMIC_NAMES)
        or name.startswith(".write-test-")
    ]
    if os.path.isdir(ckpt):
        candidates += [os.path.join(ckpt, n) for n in os.listdir(ckpt) if n.startswith("tmp-")]
    for path in candidates:
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed
