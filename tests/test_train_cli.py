"""Tests for train.py as users run it: a subprocess, one-line errors, a tiny run."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train", ROOT / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)


def _train(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _main_error(capsys, *args):
    """Runs train.main in-process; returns its one stderr line."""
    assert train.main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_key():
    proc = _train("--set", "model.widht=3")
    _assert_one_line_error(proc, "'model.widht'", "Valid keys:", "model.hidden")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs=ten", "train.epochs='ten'"),
        ("model.zeta=1.5", "model.zeta=1.5"),
        ("model.method=mlp", "model.method='mlp'"),
        ("nonsense", "KEY=VALUE"),
    ],
)
def test_bad_values(capsys, override, fragment):
    assert fragment in _main_error(capsys, "--set", override)


def test_missing_config_file(capsys, tmp_path):
    assert "Cannot read config" in _main_error(capsys, "--config", str(tmp_path / "x.toml"))


def test_missing_data_file(tmp_path):
    # A subprocess, as users run it: the config's relative data path from another folder.
    proc = _train("--config", str(ROOT / "configs" / "leukemia.toml"), cwd=tmp_path)
    _assert_one_line_error(proc, "Data file not found", "data/leukemia.mat")


def test_invalid_data_file(capsys, tmp_path):
    scipy.io.savemat(tmp_path / "bad.mat", {"features": np.ones((4, 2))})
    err = _main_error(capsys, "--set", f"data.path={tmp_path / 'bad.mat'}")
    assert "keys=['features']" in err


def test_output_dir_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    assert "Not a directory" in _main_error(capsys, "--set", f"output.dir={tmp_path / 'f' / 'r'}")


def test_help_lists_keys(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0 and "model.prune_epochs" in capsys.readouterr().out


def test_tiny_default_run(tmp_path):
    out = tmp_path / "run"
    proc = _train(
        "--config", str(ROOT / "configs" / "default.toml"),
        "--set", f"output.dir={out}",
        "--set", "data.synthetic_samples=60",
        "--set", "data.synthetic_features=12",
        "--set", "model.hidden=[10,10]",
        "--set", "model.epsilon=2",
        "--set", "model.start=0",
        "--set", "model.prune_epochs=1",
        "--set", "model.alpha=0.2",
        "--set", "model.kernel_impl=sparse_dense_matmul",
        "--set", "train.epochs=2",
        "--set", "train.batch_size=20",
        "--set", "train.verbose=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max test accuracy" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "npset" and results["hidden_units"] == [7, 7]  # 10 -> 8 -> 7
    assert (out / "model.keras").exists() and (out / "config.json").exists()
