"""benchmarks/bench_epoch.py on a tiny MLP: whole epochs timed, NPSET shrinks, results written."""

import json

from benchmarks import bench_epoch as be


def test_main_times_set_and_npset_epochs(tmp_path, capsys):
    out = tmp_path / "epoch.json"
    be.main(
        [
            "--hidden",
            "40",
            "40",
            "--quick",
            "--steps-per-execution",
            "5",
            "--output",
            str(out),
        ]
    )
    payload = json.loads(out.read_text())
    set_rows, np_rows = payload["epochs"]["SET"], payload["epochs"]["NPSET"]
    epochs = payload["args"]["epochs"]
    assert len(set_rows) == len(np_rows) == epochs == 1 + 4 + 1 + 3
    # 48 samples at batch 2: 24 steps per epoch, of which 5 does not divide.
    assert payload["summary"]["steps_per_execution"] == 4
    assert all(r["units"] == [40, 40] for r in set_rows)
    assert np_rows[-1]["units"] == [7, 7]  # 40 -> 28 -> 20 -> 14 -> 10 -> 7 (alpha 0.3)
    assert np_rows[-1]["nnz"] < set_rows[-1]["nnz"]
    for row in set_rows + np_rows:
        assert row["train_s"] > 0 and row["total_s"] >= row["train_s"]
    # SET evolves after every epoch but the last; pruning happens only at NPSET's events:
    # the widths change exactly at epochs 1-5 (times are the benchmark's, not asserted here).
    assert all(r["evolution_s"] >= 0 and r["pruning_s"] >= 0 for r in set_rows + np_rows)
    widths = [r["units"][0] for r in np_rows]
    assert [b < a for a, b in zip(widths, widths[1:], strict=False)] == [True] * 5 + [False] * 3
    summary = payload["summary"]
    assert summary["keras_floor_epoch_s"] > 0
    # Two alternating rounds (--quick), epochs 1-3 of each kept, for all three models.
    timed = payload["interleaved"]
    assert sorted(timed) == ["NPSET", "SET", "floor"]
    assert all(len(timed[name]) == 6 == summary["timed_epochs"] for name in timed)
    assert all(evolve > 0 for _, evolve in timed["SET"] + timed["NPSET"])
    assert all(evolve == 0 for _, evolve in timed["floor"])
    assert "After pruning" in capsys.readouterr().out
