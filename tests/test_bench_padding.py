"""benchmarks/bench_padding.py on a tiny layer: every way computes one step, a row per fill."""

import json

import numpy as np
import tensorflow as tf

from benchmarks import bench_padding as bp
from keras_npset import topology


def test_every_way_computes_the_live_kernels_step():
    shape = (40, 30)
    rng = np.random.default_rng(0)
    indices = topology.erdos_renyi_indices(*shape, rng, epsilon=3).astype(np.int32)
    values = rng.standard_normal(len(indices)).astype(np.float32)
    x = tf.constant(rng.standard_normal((2, shape[0])).astype(np.float32))
    dy = tf.constant(rng.standard_normal((2, shape[1])).astype(np.float32))
    padded, live = bp.storage(indices, values, 0.4)
    assert live[0].shape[0] == round(len(indices) * 0.4)
    inputs = {"padded": padded, "compact": live, "whole storage": padded}
    totals = [
        float(bp.step_programs(way, *shape, repeats=2)(x, *inputs[way], dy)) for way in bp.WAYS
    ]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-5)


def test_main_writes_one_row_per_fill(tmp_path, capsys):
    out = tmp_path / "padding.json"
    bp.main(
        ["--n-in", "50", "--n-out", "40", "--epsilon", "3", "--fills", "1", "0.3"]
        + ["--repeats", "2", "--rounds", "2", "--output", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["fill"] for r in rows] == [1.0, 0.3]
    for r in rows:
        assert set(r["step_s"]) == set(bp.WAYS)
        assert r["padded_over_compact"] > 0
    assert "padded / compact" in capsys.readouterr().out
