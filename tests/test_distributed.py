"""SparseDense, SETEvolution and NeuronPruning under tf.distribute.MirroredStrategy.

Two logical CPU devices must be configured before TensorFlow initialises its
devices, so the training runs in a fresh Python process
(`tests/mirrored_training.py`), which prints its findings as JSON.
"""

import json
import os
import subprocess
import sys

import pytest

HELPER = os.path.join(os.path.dirname(__file__), "mirrored_training.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def result():
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    # Functional model with a LayerNormalization between two pruned layers;
    # 3 epochs: SET after epochs 0 and 1, pruning before epochs 1 and 2.
    proc = subprocess.run(
        [sys.executable, HELPER, "functional", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runs_on_two_replicas_and_prunes(result):
    assert result["replicas"] == 2
    assert result["events"] == [[1, 2], [1, 2]]
    assert result["units"][0] == result["units"][1] == [14, 9, 3]


def test_every_replica_holds_the_same_topology_and_state(result):
    replica_vars = result["replica_vars"]
    # indices, values, bias of 3 layers, LayerNorm gamma/beta, and a momentum
    # slot for every trainable one.
    assert len(replica_vars) == 9 + 2 + (6 + 2)
    for name, info in replica_vars.items():
        assert info["replicas"] == 2, name
        assert info["mirrored"] == "MirroredVariable", name  # new storage is mirrored too
        assert info["same"], name
    assert replica_vars["h2/indices"]["shape"][0] == replica_vars["h2/values"]["shape"][0]


def test_matches_single_device_training(result):
    # Same seeds, data order and SGD: the same topology changes exactly, the
    # same weights up to the order of the gradient all-reduce.
    assert result["indices_equal"]
    assert result["max_weight_diff"] < 1e-4
    assert result["max_prediction_diff"] < 1e-4
