"""benchmarks/bench_datasets.py on a tiny stand-in dataset: configs found, shares recorded."""

import json

import numpy as np
import pytest
import scipy.io

from benchmarks import bench_datasets as bd
from benchmarks import bench_epoch as be


def _write_mat(path, samples=60, features=30, classes=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, features))
    y = np.arange(samples) % classes + 1
    scipy.io.savemat(path, {"X": x, "Y": y[:, None]})


def test_finds_only_configs_with_data(tmp_path):
    _write_mat(tmp_path / "lung_discrete.mat")
    _write_mat(tmp_path / "not_a_paper_dataset.mat")
    found = bd.available(str(tmp_path))
    assert [name for name, _, _ in found] == ["lung_discrete"]
    assert found[0][1].endswith("configs/lung_discrete.toml")
    assert bd.available(str(tmp_path), ["madelon"]) == []


def _one_row(tmp_path):
    """`main` on a stand-in lung_discrete (hidden 16-16, 3 epochs); its one results row."""
    _write_mat(tmp_path / "lung_discrete.mat")
    out = tmp_path / "datasets.json"
    bd.main(
        ["--data-dir", str(tmp_path), "--hidden", "16", "16", "--epochs", "3"]
        + ["--output", str(out)]
    )
    (row,) = json.loads(out.read_text())["rows"]
    return row


def test_main_times_set_epochs(tmp_path, capsys):
    row = _one_row(tmp_path)
    assert row["dataset"] == "lung_discrete"
    assert row["widths"] == [30, 16, 16, 3] and row["train_samples"] == 40
    assert row["steps_per_epoch"] == 20 and row["steps_per_execution"] == 20  # one call an epoch
    assert row["finite_weights"] and row["nnz"] > 0
    assert row["evolution_s"] > 0 and row["train_s"] > 0
    assert 0 < row["evolution_share"] < 1
    assert "| lung_discrete | 40 | 30-16-16-3 |" in capsys.readouterr().out


def test_an_epoch_is_its_training_plus_its_evolution(tmp_path, monkeypatch):
    # An evolution made 100 s slower must lengthen the epoch, not its training.
    # The benchmark's clock is a fake one (a tick per reading, 100 s per
    # evolution), so the figures do not depend on how fast the machine is.
    class Clock:
        now = 0.0

        @classmethod
        def perf_counter(cls):
            cls.now += 0.001
            return cls.now

    original = bd.TimedSET.evolve

    def slow_evolve(self):
        original(self)
        Clock.now += 100.0

    monkeypatch.setattr(be, "time", Clock)
    monkeypatch.setattr(bd.TimedSET, "evolve", slow_evolve)
    row = _one_row(tmp_path)
    assert row["evolution_s"] >= 100 and 0 < row["train_s"] < 1
    assert row["epoch_s"] >= row["train_s"] + 100


def test_no_data_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bd.main(["--data-dir", str(tmp_path)])
    assert (
        f"no configs/<name>.toml with a <name>.mat in {str(tmp_path)!r}" in capsys.readouterr().err
    )


def test_too_few_epochs_is_a_usage_error(tmp_path, capsys):
    _write_mat(tmp_path / "lung_discrete.mat")
    with pytest.raises(SystemExit):
        bd.main(["--data-dir", str(tmp_path), "--epochs", "1"])
    assert "--epochs must be at least 2 (the first traces); got 1" in capsys.readouterr().err
