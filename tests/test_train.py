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


def test_bad_key_fails_before_tensorflow_is_imported():
    # train.py as `python train.py --config X --set bad.key=1` runs it, then a look at
    # what it imported: the one-line error comes before TensorFlow loads.
    config = str(ROOT / "configs" / "leukemia.toml")
    code = (
        "import runpy, sys\n"
        # train.py ends with quiet.exit_now (os._exit): here it must return to report.
        "from keras_npset.experiments import quiet\n"
        "quiet.exit_now = sys.exit\n"
        f"sys.argv = ['train.py', '--config', {config!r}, '--set', 'bad.key=1']\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('loaded:', loaded)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    _assert_one_line_error(proc, "Unknown config key 'bad.key'")
    assert "loaded: []" in proc.stdout, proc.stdout


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
    assert proc.stderr == ""  # no TensorFlow noise (such as the cuInit error of CPU machines)
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "npset" and results["hidden_units"] == [7, 7]  # 10 -> 8 -> 7
    assert (out / "model.keras").exists() and (out / "config.json").exists()


# ---------------------------------------------------------------- bad input never costs a result


def _mat(tmp_path, name, **arrays):
    path = tmp_path / name
    scipy.io.savemat(path, arrays)
    return path


def _bad_data(tmp_path, kind):
    x = np.random.default_rng(0).standard_normal((12, 4))
    y = np.arange(12) % 2
    if kind == "nan":
        x[3, 1] = np.nan
        return _mat(tmp_path, "d.mat", X=x, Y=y)
    if kind == "inf":
        x[0, 0] = -np.inf
        return _mat(tmp_path, "d.mat", X=x, Y=y)
    if kind == "text":
        return _mat(tmp_path, "d.mat", X=np.array(["a", "b"] * 6), Y=y)
    if kind == "count":
        return _mat(tmp_path, "d.mat", X=x, Y=y[:-1])
    if kind == "one_class":
        return _mat(tmp_path, "d.mat", X=x, Y=np.ones(12))
    if kind == "no_y":
        return _mat(tmp_path, "d.mat", X=x)
    if kind == "garbage":
        path = tmp_path / "d.mat"
        path.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
        return path
    if kind == "directory":
        return tmp_path
    return tmp_path / "missing.mat"


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("text", "must be numeric"),
        ("count", "12 samples but 11 labels"),
        ("one_class", "at least 2 classes"),
        ("no_y", "keys=['X']"),
        ("garbage", "Cannot read MATLAB file"),
        ("directory", "Data file not found"),
        ("missing", "Data file not found"),
    ],
)
def test_bad_data_keeps_output_dir(capsys, tmp_path, kind, fragment):
    out = tmp_path / "run"
    out.mkdir()
    (out / "sentinel.txt").write_text("mine")
    (out / "results.json").write_text('{"max_test_accuracy": 99.0}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    data = _bad_data(tmp_path, kind)
    err = _main_error(capsys, "--set", f"data.path={data}", "--set", f"output.dir={out}")
    assert fragment in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model.hidden=[4,4]", "model.min_units=5"], "model.min_units=5"),
        (["model.min_units=0"], "model.min_units=0"),
        (["model.method=npset_2nd", "model.hidden=[8]"], "needs at least 2"),
        (["data.synthetic_samples=2", "data.train_fraction=0.4"], "empty train or test"),
        (["model.hidden=[0,4]"], "list of integers >= 1"),
        (["train.batch_size=0"], "train.batch_size=0"),
        (["train.learning_rate=-1"], "train.learning_rate=-1.0"),
        (["train.seed=1.5"], "train.seed=1.5"),
        (["model.hidden=300"], "model.hidden=300"),
        (["output.tensorboard=yes"], "output.tensorboard='yes'"),
        (["data.stratify=[1]"], "data.stratify=[1]"),
        (["model.hidden=[3,"], "Cannot parse"),
        (["train.batch"], "KEY=VALUE"),
    ],
)
def test_bad_values_keep_output_dir(capsys, tmp_path, overrides, fragment):
    out = tmp_path / "run"
    out.mkdir()
    (out / "sentinel.txt").write_text("mine")
    sets = [a for o in overrides for a in ("--set", o)]
    assert fragment in _main_error(capsys, *sets, "--set", f"output.dir={out}")
    assert os.listdir(out) == ["sentinel.txt"]


def test_results_of_an_unknown_run_are_not_overwritten(capsys, tmp_path):
    # Valid input, but output.dir holds a result that no config.json vouches for.
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"max_test_accuracy": 99.0}\n')
    err = _main_error(capsys, "--set", f"output.dir={out}", "--set", "data.synthetic_samples=30")
    assert "no config.json" in err and "--fresh" in err
    assert os.listdir(out) == ["results.json"]


def test_unknown_key_in_config_file(capsys, tmp_path):
    (tmp_path / "c.toml").write_text("[model]\nhiden = [3, 3]\n")
    assert "'model.hiden'" in _main_error(capsys, "--config", str(tmp_path / "c.toml"))


def test_unreadable_output_dir(capsys):
    # /proc refuses new folders even to root.
    assert "/proc/npset-run" in _main_error(capsys, "--set", "output.dir=/proc/npset-run/x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_dir(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert "Permission denied" in _main_error(capsys, "--set", f"output.dir={out}")
    finally:
        out.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_data_file(capsys, tmp_path):
    path = _mat(tmp_path, "d.mat", X=np.eye(6), Y=np.arange(6) % 2)
    path.chmod(0)
    assert "Cannot read MATLAB file" in _main_error(capsys, "--set", f"data.path={path}")


def test_config_values_are_never_evaluated(capsys, tmp_path):
    # Configs are TOML data: code-like text stays a string (and is then rejected).
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    from keras_npset.experiments.config import load_config

    assert load_config(None, [f"data.path={code}"]).data.path == code
    assert "Data file not found" in _main_error(capsys, "--set", f"data.path={code}")
    assert "model.method=" in _main_error(capsys, "--set", "model.method=__import__('os')")
    (tmp_path / "c.toml").write_text(f'[model]\nmethod = "{code}"\n')
    assert "model.method" in _main_error(capsys, "--config", str(tmp_path / "c.toml"))
    assert not marker.exists()


def test_help_documents_resume(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "--fresh" in text and "resuming:" in text and ".old-<timestamp>" in text
