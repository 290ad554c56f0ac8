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
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_npset.config import load_config, valid_keys  # noqa: E402 (after the env var)
from keras_npset.data import load_from_config  # noqa: E402


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
    from keras_npset import experiment  # imports TensorFlow: only once inputs are valid

    experiment.run(cfg, dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
