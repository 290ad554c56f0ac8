"""benchmarks/original_set_mlp.py with a stand-in for the original module."""

import json
import sys
import textwrap

import numpy as np
import pytest
import scipy.io

from benchmarks import original_set_mlp as driver

# The stand-in has the original's interface and does, in `fit`, what the
# adaptations are for: the Cython kernel's write into `coo_matrix(w).data`,
# `array_intersect` through `np.in1d`, and the SET step as `weightsEvolution`.
FAKE = """
import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

class Relu: pass
class Sigmoid: pass
class MSE: pass

def array_intersect(A, B):
    nrows, ncols = A.shape
    dtype = {"names": ["f{}".format(i) for i in range(ncols)], "formats": ncols * [A.dtype]}
    return np.in1d(A.view(dtype), B.view(dtype))

class SET_MLP:
    def __init__(self, dimensions, activations, epsilon=20):
        self.dimensions, self.activations, self.epsilon = dimensions, activations, epsilon
        self.w = csr_matrix(np.arange(1.0, 7.0).reshape(2, 3))

    def fit(self, x, y_true, x_test, y_test, loss, epochs, batch_size, **kwargs):
        global LAST
        LAST = dict(x=x, y=y_true, x_test=x_test, y_test=y_test, loss=loss, epochs=epochs,
                    batch_size=batch_size, **kwargs)
        dw = coo_matrix(self.w)
        dw.data[:] = -1.0
        LAST["w_after"] = self.w.toarray()
        LAST["evolution"] = self.weightsEvolution()
        LAST["intersect"] = array_intersect(np.array([[0, 1], [2, 3]]), np.array([[2, 3]]))
        metrics = np.zeros((epochs, 3))
        metrics[:, 1] = np.linspace(0.25, 0.5, epochs)
        metrics[-1, 1] = 0.375
        return metrics

    def weightsEvolution(self):
        return "loop"

    def weightsEvolution_II(self):
        return "vectorised"
"""


@pytest.fixture
def original(tmp_path, monkeypatch):
    code = tmp_path / "orig"
    code.mkdir()
    (code / "set_mlp_sparse_data_structures.py").write_text(textwrap.dedent(FAKE))
    monkeypatch.delitem(sys.modules, "set_mlp_sparse_data_structures", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(np, "in1d", None, raising=False)  # as on NumPy >= 2.4
    yield code
    sys.modules.pop("set_mlp_sparse_data_structures", None)


def test_driver_runs_the_original_main_with_the_paper_settings(tmp_path, original):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((31, 5)) * 3 + 7
    labels = np.arange(31) % 3 + 1
    data = tmp_path / "toy.mat"
    scipy.io.savemat(data, {"X": x, "Y": labels[:, None]})
    out = tmp_path / "result.json"
    argv = [str(data), "--code", str(original), "--hidden", "8", "--epochs", "4", "--seed", "3"]
    assert driver.main([*argv, "--weight-decay", "0", "--output", str(out)]) == 0
    module = sys.modules["set_mlp_sparse_data_structures"]
    last = module.LAST
    # The original's __main__: seed, one shuffle, the first int(n * 2 / 3) train.
    np.random.seed(3)
    order = np.arange(31)
    np.random.shuffle(order)
    train, test = order[:20], order[20:]
    mean, std = x[train].mean(0), x[train].std(0)
    np.testing.assert_allclose(last["x"], (x[train] - mean) / (std + 1e-4))
    np.testing.assert_allclose(last["x_test"], (x[test] - mean) / (std + 1e-4))
    np.testing.assert_array_equal(last["y"].argmax(1), labels[train] - 1)
    np.testing.assert_array_equal(last["y_test"].argmax(1), labels[test] - 1)
    assert (last["epochs"], last["batch_size"], last["loss"]) == (4, 2, module.MSE)
    assert last["learning_rate"] == 0.01 and last["momentum"] == 0.9
    assert last["weight_decay"] == 0.0 and last["zeta"] == 0.3 and last["testing"] is True
    # The adaptations: the kernel's write leaves the weights alone, the
    # vectorised SET step replaces the loop, np.in1d works on structured rows.
    np.testing.assert_array_equal(last["w_after"], np.arange(1.0, 7.0).reshape(2, 3))
    assert last["evolution"] == "vectorised"
    np.testing.assert_array_equal(last["intersect"], [False, True])
    result = json.loads(out.read_text())
    assert result["train_test"] == [20, 11] and result["dataset"] == "toy"
    # Epochs at 25, 33.3, 41.7 and 37.5%: the maximum over epochs, and the last.
    assert result["max_test_accuracy"] == pytest.approx(100 * 5 / 12)
    assert result["final_test_accuracy"] == 37.5
    assert len(result["test_accuracy"]) == 4
