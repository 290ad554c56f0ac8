"""Train one model of the NPSET paper's experiments.

Usage:
    python train.py                                   # built-in synthetic quick run
    python train.py --config configs/leukemia.toml    # a paper dataset (file in data/)
    python train.py --config configs/lung_discrete.toml \\
        --set model.method=set --set train.epochs=20 --set data.path=/data/lung_discrete.mat

Every key of keras_npset/experiments/config.py can be overridden with --set KEY=VALUE (dotted key,
TOML value; a bare word is a string). Results go to output.dir (see keras_npset.experiments.run).

Resuming: the run saves a checkpoint into output.dir after every epoch. If it is killed,
re-run the same command: it continues from the last completed epoch and ends exactly as
an uninterrupted run would. A finished run is reported as complete, not trained again.
A different config into the same output.dir is refused; --fresh moves the old folder
aside (to <output.dir>.old-<timestamp>) and starts over. Errors are one line on stderr
("error: ..."), exit code 2 for bad input and 1 for a failure during training.
"""

from __future__ import annotations

import argparse
import os
import sys

# None of these imports TensorFlow: a bad config, data file or output folder is rejected
# before TensorFlow loads, in well under a second (tests/test_train.py checks it).
from keras_npset.experiments import run_dir
from keras_npset.experiments.config import load_config, valid_keys
from keras_npset.experiments.data import load_from_config
from keras_npset.experiments.quiet import exit_now, import_tensorflow_quietly

_RESUME_HELP = """\
resuming: a checkpoint is saved into output.dir after every epoch (written under a
temporary name while the next epoch trains, then renamed, so a crash never leaves a
broken one). Re-running the same command continues a killed run from its last saved
epoch, with the same topology, weights, optimizer state, random streams and data
order, so it ends exactly as an uninterrupted run; the checkpoint is removed when
results.json is written. A finished run is reported as complete and not retrained.
Running a different config into the same output.dir is refused (output.* keys,
train.verbose and train.steps_per_execution may differ); --fresh moves the old folder
to <output.dir>.old-<timestamp> and starts over.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a SET / NPSET / dense MLP as in Liu, Mocanu & Pechenizkiy (2019).",
        epilog=_RESUME_HELP + "\nkeys: " + ", ".join(valid_keys()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config (default: the built-in synthetic run)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config key, e.g. --set model.hidden=[300,300] (repeatable)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: move an existing output.dir aside to <output.dir>.old-<timestamp> "
        "instead of resuming it (nothing is deleted)",
    )
    return parser.parse_args(argv)


def _fail(error: BaseException, code: int = 2, prefix: str = "") -> int:
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {prefix}{message}", file=sys.stderr)
    return code


def _prepare_output(cfg, dataset, fresh: bool) -> tuple[str, int]:
    """Checks and locks output.dir; returns (what to do, lock descriptor)."""
    out = cfg.output.dir
    run_dir.check_writable(out)
    fd = run_dir.lock(out)
    try:
        if fresh:
            if not run_dir.is_empty(out):
                moved = run_dir.move_aside(out)
                print(f"moved the previous contents of {out} to {moved}")
                os.close(fd)
                fd = -1
                run_dir.check_writable(out)
                fd = run_dir.lock(out)
            return "new", fd
        state = run_dir.inspect(out, cfg, dataset)
        if state != "complete":
            run_dir.remove_stale_temporaries(out)
        return state, fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print(
            "error: interrupted; re-run the same command to resume from the last completed epoch",
            file=sys.stderr,
        )
        return 130


def _main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
        dataset = load_from_config(cfg.data, cfg.train.seed)
        state, lock_fd = _prepare_output(cfg, dataset, args.fresh)
    except (ValueError, OSError) as e:
        return _fail(e)
    try:
        if state == "complete":
            print(f"complete: {cfg.output.dir} already holds the results of this run")
            return 0
        import_tensorflow_quietly(without_sklearn=True)  # train.py never uses keras.wrappers
        from keras_npset.experiments import run as run_lib

        try:
            run_lib.run(cfg, dataset, resume=True)
        except Exception as e:  # one line, not a traceback; the checkpoint is kept
            return _fail(e, code=1, prefix=f"training failed ({type(e).__name__}): ")
        return 0
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    # Every file of the run is written and closed: skip the seconds that interpreter
    # shutdown spends finalising TensorFlow (keras_npset.experiments.quiet).
    exit_now(main())
