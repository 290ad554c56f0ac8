"""benchmarks/bench_runs.py on a tiny stand-in dataset: whole train.py runs, SET and NPSET."""

import json
import sys

import numpy as np
import pytest
import scipy.io

from benchmarks import bench_runs as br


def _write_mat(path, samples=60, features=30, classes=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, features))
    y = np.arange(samples) % classes + 1
    scipy.io.savemat(path, {"X": x, "Y": y[:, None]})


def test_main_times_whole_runs(tmp_path, capsys):
    data = tmp_path / "lung_discrete.mat"
    _write_mat(data)
    out = tmp_path / "runs.json"
    overrides = ["model.hidden=[16,16]", "model.alpha=0.25", "model.start=1"]
    overrides += ["model.prune_epochs=1"]
    argv = [str(data), "--epochs", "4", "--output", str(out)]
    for item in overrides:
        argv += ["--set", item]
    assert br.main(argv) == 0
    payload = json.loads(out.read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    assert set(rows) == {"set", "npset"}
    for row in rows.values():
        assert len(row["epoch_s"]) == 4 and all(s > 0 for s in row["epoch_s"])
        assert row["run_s"] > sum(row["epoch_s"])
        # A normal run says nothing on stderr: no retracing warning, no TF chatter.
        assert row["retracing_warnings"] == 0 and row["stderr"] == "", row["stderr"]
        # Start-up, epochs and exit account for the whole process.
        assert row["startup_s"] > 0 and row["teardown_s"] > 0
        assert row["final_files_s"] > 0 and row["exit_s"] > 0
        assert abs(row["final_files_s"] + row["exit_s"] - row["teardown_s"]) < 1e-6
        assert row["startup_s"] + sum(row["epoch_s"]) + row["teardown_s"] <= row["run_s"] + 0.05
        parts = row["ordinary_epoch_parts_s"]
        assert {"training", "evaluation", "checkpoint", "logging", "set"} <= set(parts)
        assert all(v >= 0 for k, v in parts.items() if k != "training")
    assert "pruning" in rows["npset"]["ordinary_epoch_parts_s"]
    # Event epochs get the same breakdown; there the pruning is at work.
    assert rows["npset"]["event_epoch_parts_s"]["pruning"] > 0
    assert "event_epoch_parts_s" not in rows["set"]
    assert rows["set"]["events"] == [] and rows["set"]["hidden_units"] == [16, 16]
    assert rows["npset"]["events"] == [1, 2]
    assert rows["npset"]["hidden_units"] == [9, 9]  # 16 -> 12 -> 9
    (summary,) = payload["summary"]
    assert summary["npset_over_set"] > 0
    # One round: its own ratio is the median's; the epochs-only ratio leaves out start-up and exit.
    assert summary["npset_over_set_by_round"] == [
        pytest.approx(rows["npset"]["run_s"] / rows["set"]["run_s"])
    ]
    assert summary["npset_over_set_epochs"] == pytest.approx(
        sum(rows["npset"]["epoch_s"]) / sum(rows["set"]["epoch_s"])
    )
    assert summary["npset_event_epoch_s"] == pytest.approx(
        np.median([rows["npset"]["epoch_s"][e] for e in (1, 2)])
    )
    printed = capsys.readouterr().out
    assert "| lung_discrete |" in printed and "| checkpoint ms |" in printed
    assert set(summary["set_epoch_parts_s"]) >= {"training", "evaluation", "checkpoint"}
    # The floor: a process that only imports TensorFlow and Keras, timed once per round.
    assert len(payload["tf_import_s"]) == 1 and summary["tf_import_s"] > 0
    assert summary["set_run_over_import"] > 1


def test_an_original_command_is_timed_beside_set_and_npset(tmp_path, capsys):
    data = tmp_path / "lung_discrete.mat"
    _write_mat(data)
    out = tmp_path / "runs.json"
    record = tmp_path / "original.txt"
    # A stand-in for the original code: it records what it was given.
    command = f"echo {{data}} {{hidden}} {{epochs}} {{seed}} {{python}} > {record}"
    argv = [str(data), "--epochs", "2", "--output", str(out), "--original", command]
    for item in ["model.hidden=[16,16]", "model.start=0", "model.prune_epochs=0"]:
        argv += ["--set", item]
    assert br.main(argv) == 0
    assert record.read_text().split() == [str(data), "16", "2", "0", sys.executable]
    payload = json.loads(out.read_text())
    assert [r["method"] for r in payload["rows"]] == ["original", "set", "npset"]
    (summary,) = payload["summary"]
    assert summary["original_over_set"] == pytest.approx(
        summary["original_run_s"] / summary["set_run_s"]
    )
    assert "| original run s |" in capsys.readouterr().out


def test_epoch_parts_split_each_epoch_by_callback():
    epoch_s = [9.0, 1.0, 2.0, 3.0]
    callback_s = {
        "TestSetMetrics": [0.5, 0.1, 0.2, 0.3],
        "TrainingStateCheckpoint": [0.5, 0.2, 0.2, 0.2],
        "TensorBoard": [0.1, 0.05, 0.05, 0.05],
        "TopologyLogger": [0.1, 0.05, 0.15, 0.05],
        "Custom": [0.0, 0.1, 0.1, 0.1],
    }
    parts = br.epoch_parts(epoch_s, callback_s, [1, 2, 3])
    assert parts["evaluation"] == pytest.approx(0.2)
    assert parts["checkpoint"] == pytest.approx(0.2)
    assert parts["logging"] == pytest.approx(0.1)  # TensorBoard + TopologyLogger, median
    assert parts["other"] == pytest.approx(0.1)
    # What the callbacks leave of each epoch: 1 - 0.55, 2 - 0.7, 3 - 0.7.
    assert parts["training"] == pytest.approx(1.3)


def test_datasets_need_a_config(tmp_path):
    data = tmp_path / "not_a_paper_dataset.mat"
    _write_mat(data)
    with pytest.raises(ValueError, match="configs/not_a_paper_dataset.toml"):
        br.main([str(data)])
