"""benchmarks/original_accuracy.py with a stand-in for the original code."""

import json
import textwrap

import numpy as np
import pytest
import scipy.io

from benchmarks import original_accuracy as oa

# Accuracy 10 * (seed + 1) %, 5 points lower at the last epoch.
FAKE = """
import numpy as np

class Relu: pass
class Sigmoid: pass
class MSE: pass

class SET_MLP:
    def __init__(self, dimensions, activations, epsilon=20):
        self.dimensions = dimensions

    def fit(self, x, y_true, x_test, y_test, loss, epochs, batch_size, **kwargs):
        metrics = np.zeros((epochs, 3))
        top = 0.1 * (SEED[0] + 1)
        metrics[:, 1] = top
        metrics[-1, 1] = top - 0.05
        return metrics

SEED = [0]
"""


def _setup(tmp_path):
    code = tmp_path / "orig"
    code.mkdir()
    # The stand-in learns its seed from the driver's command line.
    fake = textwrap.dedent(FAKE).replace(
        "SEED = [0]", "import sys\nSEED = [int(sys.argv[sys.argv.index('--seed') + 1])]"
    )
    (code / "set_mlp_sparse_data_structures.py").write_text(fake)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("Yale", "lung_discrete"):
        scipy.io.savemat(
            data / f"{name}.mat",
            {"X": rng.standard_normal((12, 4)), "Y": (np.arange(12) % 3 + 1)[:, None]},
        )
    reproduction = tmp_path / "reproduction.json"
    results = [
        {"method": "set", "dataset": "Yale", "seed": s, "max_test_accuracy": a}
        for s, a in ((0, 70.0), (1, 80.0))
    ]
    results.append({"method": "npset", "dataset": "Yale", "seed": 0, "max_test_accuracy": 1.0})
    reproduction.write_text(json.dumps({"results": results}))
    return code, data, reproduction


def test_original_accuracy_against_table_2_and_the_library(tmp_path, capsys):
    code, data, reproduction = _setup(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out.json"
    argv = ["--code", str(code), "--data-dir", str(data), "--runs-dir", str(runs)]
    argv += ["--datasets", "Yale", "lung_discrete", "--seeds", "0", "1", "--epochs", "3"]
    argv += ["--reproduction", str(reproduction), "--output", str(out)]
    assert oa.main(argv) == 0
    payload = json.loads(out.read_text())
    yale, lung = payload["summary"]
    # Seeds 0 and 1 reach 10% and 20%, and end 5 points lower.
    assert yale["original_max"] == pytest.approx(15.0)
    assert yale["original_max_std"] == pytest.approx(5.0)
    assert yale["original_final"] == pytest.approx(10.0)
    assert yale["paper_set"] == 70.91  # Table 2
    assert yale["library_set_max"] == pytest.approx(75.0)  # SET only, same seeds
    assert lung["library_set_max"] is None and lung["paper_set"] == 88.0
    assert [r["seed"] for r in payload["rows"]] == [0, 1, 0, 1]
    assert (
        "| Yale | 0,1 | 15.00 ± 5.00 | 10.00 | 70.91 | 75.00 | -55.91 |" in capsys.readouterr().out
    )
    # Finished runs are reused: without the original code the same call still works.
    (code / "set_mlp_sparse_data_structures.py").unlink()
    assert oa.main(argv) == 0
    assert json.loads(out.read_text())["summary"] == payload["summary"]
    # --collect-only reports what is there and lists the rest.
    assert oa.main([*argv, "--seeds", "0", "1", "2", "--collect-only"]) == 0
    collected = json.loads(out.read_text())
    assert collected["summary"] == payload["summary"]
    assert collected["missing"] == ["Yale seed 2", "lung_discrete seed 2"]
    # ... but not for other settings.
    with pytest.raises(ValueError, match="weight_decay"):
        oa.main([*argv, "--weight-decay", "0.0002"])


def test_original_accuracy_rejects_unknown_datasets(tmp_path):
    code, data, _ = _setup(tmp_path)
    argv = ["--code", str(code), "--data-dir", str(data), "--runs-dir", str(tmp_path / "r")]
    with pytest.raises(ValueError, match="configs/nope.toml"):
        oa.main([*argv, "--datasets", "nope"])
    with pytest.raises(ValueError, match="madelon.mat"):
        oa.main([*argv, "--datasets", "madelon"])
