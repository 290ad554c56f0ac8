"""benchmarks/bench_evolution.py on a tiny MLP: both paths timed, the threshold restored."""

import json

from benchmarks import bench_evolution as bev
from keras_npset import callbacks as callbacks_module


def test_main_times_both_paths_and_restores_the_threshold(tmp_path, capsys):
    before = callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ
    out = tmp_path / "evolution.json"
    bev.main(
        ["--widths", "30", "40", "40", "3", "--epsilon", "4", "--rounds", "2", "--output", str(out)]
    )
    assert callbacks_module.PARALLEL_EVOLUTION_MIN_NNZ == before
    (row,) = json.loads(out.read_text())["rows"]
    assert row["widths"] == [30, 40, 40, 3] and row["nnz"] > 0
    assert set(row["median_s"]) == {"one thread", "two threads"}
    assert row["speedup"] > 0
    assert "| 30-40-40-3 | 4 |" in capsys.readouterr().out
