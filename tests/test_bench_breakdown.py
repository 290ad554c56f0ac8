"""benchmarks/bench_breakdown.py on a tiny shape: every phase timed, the table well formed."""

from benchmarks import bench_breakdown as bb


def test_measure_times_every_phase_against_the_floor():
    row = bb.measure([30, 20, 20, 3], epsilon=3, batch=2, rounds=2, flops=1e10, bandwidth=1e9)
    assert set(row["median_s"]) == set(bb.PHASES)
    assert all(t > 0 for t in row["median_s"].values())
    assert row["nnz"] > 0 and row["floor_s"] > 0
    lines = bb.table([row]).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("| 30-20-20-3 | 3 | 2 | ")
    assert lines[0].count("|") == lines[2].count("|")
