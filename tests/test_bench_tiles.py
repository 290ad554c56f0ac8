"""benchmarks/bench_tiles.py on a tiny layer: same connections in every layout, ratios recorded."""

import json

import numpy as np

from benchmarks import bench_tiles as bt
from keras_npset import topology


def test_layouts_hold_the_same_connections_with_their_values():
    shape = (30, 40)
    indices = topology.erdos_renyi_indices(*shape, np.random.default_rng(0), epsilon=3)
    values = np.arange(len(indices), dtype=np.float32)
    dense = np.zeros(shape, np.float32)
    dense[indices[:, 0], indices[:, 1]] = values
    layouts = bt.layouts(indices, shape, tiles=[8])
    assert list(layouts) == ["row-major int64", "row-major int32", "tiles 8 int32"]
    for idx, order in layouts.values():
        got = np.zeros(shape, np.float32)
        got[idx[:, 0], idx[:, 1]] = values[order]
        np.testing.assert_array_equal(got, dense)
    tiled, _ = layouts["tiles 8 int32"]
    keys = topology.order_keys(tiled, shape, 8)
    assert np.all(np.diff(keys) > 0)


def test_main_writes_one_row_per_batch_and_layout(tmp_path, capsys):
    out = tmp_path / "tiles.json"
    bt.main(
        [
            "--n-in",
            "60",
            "--n-out",
            "50",
            "--epsilon",
            "3",
            "--batches",
            "2",
            "3",
            "--tiles",
            "16",
            "--rounds",
            "2",
            "--output",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["layout"]) for r in rows] == [
        (b, name)
        for b in (2, 3)
        for name in ("row-major int64", "row-major int32", "tiles 16 int32")
    ]
    for r in rows:
        assert set(r["median_s"]) == set(bt.PRODUCTS)
        assert all(t > 0 for t in r["median_s"].values())
        assert r["floor_s"] > 0
    assert rows[0]["speedup_vs_first"] == 1.0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6 and table[0].count("|") == table[-1].count("|")
