"""Train one model of the NPSET paper's experiments.

Usage:
    python train.py                                   # built-in synthetic quick run
    python train.py --config configs/leukemia.toml    # a paper dataset (file in data/)
    python train.py --config configs/lung_discrete.toml \\
        --set model.method=set --set train.epochs=20 --set data.path=/data/lung_discrete.mat

Every key of keras_npset/config.py can be overridden with --set KEY=VALUE (dotted key,
TOML value; a bare word is a string). Results go to output.dir (see keras_npset.experiment).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides TensorFlow's import-time C++ log lines (written to fd 2, not sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# keras_npset/__init__.py imports TensorFlow; its start-up chatter would bury the one-line
# error messages this script promises.
with _native_stderr_silenced():
    from keras_npset.config import load_config, valid_keys
    from keras_npset.data import load_from_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a SET / NPSET / dense MLP as in Liu, Mocanu & Pechenizkiy (2019).",
        epilog="Keys: " + ", ".join(valid_keys()),
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
    return parser.parse_args(argv)


def _fail(error: BaseException) -> int:
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        dataset = load_from_config(cfg.data, cfg.train.seed)
        os.makedirs(cfg.output.dir, exist_ok=True)
    except (ValueError, OSError) as e:
        return _fail(e)
    from keras_npset import experiment

    experiment.run(cfg, dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
