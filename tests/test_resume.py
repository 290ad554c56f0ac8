"""train.py survives crashes: SIGKILL at any moment, then the same command resumes exactly.

One uninterrupted run (A) and one killed-and-resumed run (B) of the same tiny
NPSET config are shared by the tests (module fixture, both subprocesses as
users run them); everything else runs `train.main` in-process.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_npset import SparseDense
from keras_npset.checkpoint import restore_training_state, save_training_state
from keras_npset.experiments import run_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_for_resume", ROOT / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)

EPOCHS = 6
# Pruning events at the beginning of epochs 1, 2 and 3 (alpha 0.1: 24 -> 22 -> 20 -> 18).
TINY = [
    "data.synthetic_samples=120",
    "data.synthetic_features=20",
    "model.hidden=[24,24]",
    "model.epsilon=3",
    "model.alpha=0.1",
    "model.start=1",
    "model.prune_epochs=2",
    f"train.epochs={EPOCHS}",
    "train.batch_size=16",
    "train.verbose=0",
    "model.kernel_impl=sparse_dense_matmul",
]
EXACT_KEYS = (
    "test_accuracy",
    "train_accuracy",
    "max_test_accuracy",
    "final_test_accuracy",
    "best_epoch",
    "hidden_units",
    "params",
    "params_per_layer",
    "neurons",
)


def _args(out, *extra):
    args = []
    for item in (*TINY, f"output.dir={out}", *extra):
        args += ["--set", item]
    return args


def _start(out):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *_args(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc):
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def _checkpoint_epoch(out):
    try:
        with open(out / run_dir.CHECKPOINT_SUBDIR / "checkpoint.json") as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return -1


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(pathlib.Path(folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    a, b = base / "a", base / "b"
    proc_a, proc_b = _start(a), _start(b)  # in parallel: most of the time is start-up
    # Kill B as soon as it has checkpointed epoch 2: inside the pruning phase (the
    # event of epoch 1 done, those of epochs 2 and 3 ahead), whatever it is doing.
    deadline = time.monotonic() + 180
    while _checkpoint_epoch(b) < 2:
        assert proc_b.poll() is None, proc_b.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint of epoch 2"
        time.sleep(0.01)
    proc_b.send_signal(signal.SIGKILL)
    proc_b.communicate()
    killed_at = _checkpoint_epoch(b)
    assert 2 <= killed_at < EPOCHS and not (b / "results.json").exists()
    # A kill in the middle of later writes: torn temporaries of the next checkpoint
    # and of results.json. The resume must ignore and remove them.
    ckpt = b / run_dir.CHECKPOINT_SUBDIR
    (ckpt / "tmp-999999-epoch-000005.keras").write_bytes(b"PK\x03\x04 truncated")
    (ckpt / "tmp-999999-checkpoint.json").write_text('{"format": 1, "epoch": 5, "mod')
    (b / ".results.json.k2j3h4").write_text('{"method": "np')
    resumed_stdout = _finish(_start(b))
    _finish(proc_a)
    return a, b, killed_at, resumed_stdout


def _indices(path):
    model = keras.models.load_model(path, safe_mode=True)
    return {
        layer.name: (layer.input_dim, layer.units, layer.indices.numpy())
        for layer in model.layers
        if isinstance(layer, SparseDense)
    }


def test_killed_run_resumes_exactly(runs):
    a, b, killed_at, stdout = runs
    assert f"at epoch {killed_at}" in stdout
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    for key in EXACT_KEYS:
        assert ra[key] == rb[key], key
    assert ra["hidden_units"] == [18, 18]  # all three pruning events happened
    assert rb["resumed_at_epochs"] == [killed_at] and "resumed_at_epochs" not in ra
    # The per-epoch history survived the kill: every epoch, the same values.
    assert len(rb["epoch_seconds"]) == EPOCHS
    assert ra["history"].keys() == rb["history"].keys()
    for key in ra["history"]:
        np.testing.assert_allclose(ra["history"][key], rb["history"][key], rtol=1e-6)
    ia, ib = _indices(a / "model.keras"), _indices(b / "model.keras")
    assert ia.keys() == ib.keys() == {"hidden_1", "hidden_2", "output"}
    for name in ia:
        assert ia[name][:2] == ib[name][:2], name
        np.testing.assert_array_equal(ia[name][2], ib[name][2])
    # The checkpoint and every torn temporary are gone once the run is complete.
    assert sorted(os.listdir(b)) == sorted(os.listdir(a))
    assert run_dir.CHECKPOINT_SUBDIR not in os.listdir(b)


def test_finished_run_is_reported_complete(runs, capsys):
    a = runs[0]
    before = _snapshot(a)
    # train.verbose, train.steps_per_execution and output.* do not change what a run computes.
    assert train.main(_args(a, "train.verbose=2", "train.steps_per_execution=3")) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("complete:"), out
    assert _snapshot(a) == before


def test_different_config_is_refused(runs, capsys):
    a = runs[0]
    before = _snapshot(a)
    assert train.main(_args(a, "model.hidden=[20,20]")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "different config" in err and "model.hidden: [24, 24] -> [20, 20]" in err
    assert "--fresh" in err
    assert _snapshot(a) == before
    os.close(run_dir.lock(str(a)))  # the refused run released its lock


def test_different_config_refused_while_a_checkpoint_is_there(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {"model": {"hidden": [24, 24]}}}))
    (out / run_dir.CHECKPOINT_SUBDIR).mkdir()
    (out / run_dir.CHECKPOINT_SUBDIR / "checkpoint.json").write_text("{}")
    before = _snapshot(out)
    assert train.main(_args(out, "model.hidden=[20,20]")) == 2
    assert "different config" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_fresh_moves_the_old_run_aside(runs, tmp_path, monkeypatch, capsys):
    from keras_npset.experiments import run as run_lib

    out = tmp_path / "run"
    shutil.copytree(runs[0], out)
    before = _snapshot(out)
    calls = []
    monkeypatch.setattr(run_lib, "run", lambda cfg, dataset, **kw: calls.append(kw))
    assert train.main([*_args(out, "model.hidden=[20,20]"), "--fresh"]) == 0
    assert calls == [{"resume": True}]
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert _snapshot(moved) == before  # nothing lost
    assert os.listdir(out) == []
    assert str(moved) in capsys.readouterr().out


def test_second_process_on_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    fd = run_dir.lock(str(out))
    try:
        assert train.main(_args(out)) == 2
    finally:
        os.close(fd)
    assert "Another process is writing" in capsys.readouterr().err
    assert os.listdir(out) == []


def test_error_during_training_is_one_line(tmp_path, monkeypatch, capsys):
    from keras_npset.callbacks import NeuronPruning

    def broken(self, logs=None):
        raise ValueError("Expected something.\nReceived: nothing")

    monkeypatch.setattr(NeuronPruning, "on_train_begin", broken)
    assert train.main(_args(tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert err == "error: training failed (ValueError): Expected something. Received: nothing\n"


def test_checkpoint_restore_is_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    model.compile("sgd", "mse")
    save_training_state(model, [], str(tmp_path), 1)
    with pytest.raises(ValueError, match="safe_mode"):
        restore_training_state(str(tmp_path))
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**state, "model": "../x.keras"}))
    with pytest.raises(ValueError, match="model file inside"):
        restore_training_state(str(tmp_path))


def test_changed_data_is_refused(runs):
    from keras_npset.experiments.config import load_config
    from keras_npset.experiments.data import load_from_config

    a = runs[0]
    cfg = load_config(None, [*TINY, f"output.dir={a}"])
    dataset = load_from_config(cfg.data, cfg.train.seed)
    assert run_dir.inspect(str(a), cfg, dataset) == "complete"
    dataset.x_train, dataset.y_train = dataset.x_train[1:], dataset.y_train[1:]
    with pytest.raises(ValueError, match="data .*'n_train': 80.*-> .*'n_train': 79"):
        run_dir.inspect(str(a), cfg, dataset)


def test_a_key_added_after_the_run_counts_as_its_default():
    """A run folder written before a config key existed matches a config at that default."""
    from keras_npset.experiments.config import config_to_dict, load_config
    from keras_npset.experiments.run_dir import config_differences

    cfg = load_config(None, ["model.method=set"])
    saved = config_to_dict(cfg)
    del saved["model"]["zeta"]  # as if written by a version without model.zeta
    assert config_differences(saved, cfg) == []
    cfg.model.zeta = 0.5  # not the default: a different run
    assert config_differences(saved, cfg) == ["model.zeta: 0.3 -> 0.5"]
