"""benchmarks/bench_features.py on a tiny stand-in dataset: every method, resumable, shrink."""

import json

import numpy as np
import pytest
import scipy.io

pytest.importorskip("sklearn")

from benchmarks import bench_features as bf  # noqa: E402


def test_tiny_benchmark_all_methods_and_resume(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 30))
    y = np.arange(60) % 3 + 1
    x[:, 4] += 2 * y  # one informative feature
    scipy.io.savemat(tmp_path / "lung_discrete.mat", {"X": x, "Y": y[:, None]})
    out = tmp_path / "features.json"
    args = ["--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "runs")]
    args += ["--datasets", "lung_discrete", "--seeds", "0", "--ks", "5", "10", "40"]
    args += ["--output", str(out), "--shrink-dataset", "lung_discrete", "--repeats", "1"]
    tiny = ["model.hidden=[16,16]", "train.epochs=3", "model.epsilon=2", "train.batch_size=20"]
    tiny += ["model.start=0", "model.prune_epochs=1", "model.input_start=0"]
    tiny += ["model.input_prune_epochs=1"]
    for override in tiny:
        args += ["--set", override]
    bf.main([*args, "--train"])
    results = json.loads(out.read_text())
    for method in bf.METHODS:
        entry = results["entries"][f"lung_discrete/0/{method}"]
        assert set(entry["accuracy"]) == {"5", "10"}  # k = 40 > 30 features is skipped
    assert results["entries"]["lung_discrete/0/input_pruning"]["pruned_to"] == 10
    entries = results["entries"]
    assert entries["lung_discrete/0/set"]["criterion"] == "path"
    assert entries["lung_discrete/0/set_strength"]["criterion"] == "strength"
    assert (
        entries["lung_discrete/0/set_strength"]["source"]
        == entries["lung_discrete/0/set"]["source"]
    )
    assert (tmp_path / "runs" / "lung_discrete" / "input_pruning_path_k10" / "seed0").is_dir()
    shrink = results["shrink"]
    assert shrink["first_layer_before"]["input_dim"] == 30
    assert shrink["first_layer_after"]["input_dim"] == 10
    assert shrink["first_layer_after"]["nnz"] < shrink["first_layer_before"]["nnz"]
    assert shrink["first_layer_speedup"] > 0
    table = (tmp_path / "features.md").read_text()
    assert "| lung_discrete | 5 |" in table and "input_pruning" in table

    # Resumable: a second run recomputes nothing.
    def fail(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(bf, "svm_accuracy", fail)
    bf.main(args)
