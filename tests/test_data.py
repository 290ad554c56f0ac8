"""Tests for keras_npset.experiments.data: loading, checks, split, standardising, synthetic data."""

import csv
import os
import pathlib

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from keras_npset.experiments import data

SHARED = pathlib.Path(os.environ.get("NPSET_DATA_DIR", "/work/shared/datasets"))
TABLES = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.csv"
SHARED_FILES = [
    "leukemia",
    "lung_discrete",
    "PCMAC",
    "Yale",
    "madelon",
    "Prostate_GE",
    "RELATHE",
    "orlraws10P",
]


def _save(tmp_path, name="d.mat", **arrays):
    path = tmp_path / name
    scipy.io.savemat(path, arrays)
    return str(path)


def _paper_rows():
    with open(TABLES, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return {row["dataset"]: row for row in csv.DictReader(lines)}


# ---------------------------------------------------------------- load_mat


def test_load_mat_x_y(tmp_path):
    x = np.arange(12, dtype=np.int16).reshape(4, 3)
    path = _save(tmp_path, X=x, Y=np.array([[3], [1], [3], [7]], dtype=np.uint8))
    xs, ys = data.load_mat(path)
    assert xs.dtype == np.float32 and xs.shape == (4, 3)
    np.testing.assert_array_equal(xs, x)
    assert ys.dtype == np.int64
    np.testing.assert_array_equal(ys, [1, 0, 1, 2])


def test_load_mat_fea_gnd_and_flat_labels(tmp_path):
    path = _save(tmp_path, fea=np.ones((3, 2)), gnd=np.array([-1, 1, -1]))
    x, y = data.load_mat(path)
    assert x.shape == (3, 2)
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_load_mat_sparse_features(tmp_path):
    x = scipy.sparse.csc_matrix(np.eye(4))
    path = _save(tmp_path, X=x, Y=np.array([[1], [2], [1], [2]]))
    xs, _ = data.load_mat(path)
    np.testing.assert_array_equal(xs, np.eye(4, dtype=np.float32))


def test_load_mat_bool_features(tmp_path):
    path = _save(tmp_path, X=np.eye(3, dtype=bool), Y=np.array([1, 2, 2]))
    xs, _ = data.load_mat(path)
    assert xs.dtype == np.float32


def test_load_mat_missing_file(tmp_path):
    missing = tmp_path / "nope.mat"
    with pytest.raises(ValueError, match=r"not found.*Received: path=.*nope\.mat"):
        data.load_mat(missing)


def test_load_mat_directory_is_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        data.load_mat(tmp_path)


def test_load_mat_unreadable(tmp_path):
    path = tmp_path / "junk.mat"
    path.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(ValueError, match=r"Cannot read MATLAB file.*Received: path="):
        data.load_mat(path)


def test_load_mat_missing_keys_lists_found(tmp_path):
    path = _save(tmp_path, data=np.ones((2, 2)), labels=np.ones(2))
    with pytest.raises(ValueError, match=r"Received: keys=\['data', 'labels'\]"):
        data.load_mat(path)


def test_load_mat_half_of_a_pair_is_missing(tmp_path):
    path = _save(tmp_path, X=np.ones((2, 2)), gnd=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"keys=\['X', 'gnd'\]"):
        data.load_mat(path)


def test_load_mat_non_numeric_features(tmp_path):
    path = _save(tmp_path, X=np.array([["a", "b"], ["c", "d"]]), Y=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"`X`.*must be numeric. Received: dtype="):
        data.load_mat(path)


def test_load_mat_non_numeric_labels(tmp_path):
    path = _save(tmp_path, X=np.ones((2, 2)), Y=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"`Y`.*must be numeric"):
        data.load_mat(path)


def test_load_mat_complex_features(tmp_path):
    path = _save(tmp_path, X=np.ones((2, 2)) * 1j, Y=np.array([1, 2]))
    with pytest.raises(ValueError, match="real-valued"):
        data.load_mat(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_mat_non_finite_features(tmp_path, bad):
    x = np.ones((3, 2))
    x[1, 1] = bad
    path = _save(tmp_path, X=x, Y=np.array([1, 2, 1]))
    with pytest.raises(ValueError, match=r"NaN or infinite.*Received: n_nonfinite=1"):
        data.load_mat(path)


def test_load_mat_non_finite_labels(tmp_path):
    path = _save(tmp_path, X=np.ones((3, 2)), Y=np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="NaN or infinite labels"):
        data.load_mat(path)


def test_load_mat_label_count_mismatch(tmp_path):
    path = _save(tmp_path, X=np.ones((4, 2)), Y=np.array([[1], [2], [1]]))
    with pytest.raises(ValueError, match=r"4 samples but 3 labels.*Y\.shape=\(3, 1\)"):
        data.load_mat(path)


def test_load_mat_label_matrix_rejected(tmp_path):
    path = _save(tmp_path, X=np.ones((4, 2)), Y=np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"vector of labels. Received: shape=\(4, 2\)"):
        data.load_mat(path)


def test_load_mat_single_class(tmp_path):
    path = _save(tmp_path, X=np.ones((3, 2)), Y=np.array([5, 5, 5]))
    with pytest.raises(ValueError, match=r"at least 2 classes. Received: classes=\[5\]"):
        data.load_mat(path)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_load_mat_empty(tmp_path, shape):
    path = _save(tmp_path, X=np.zeros(shape), Y=np.zeros((shape[0], 1)))
    with pytest.raises(ValueError, match=r"non-empty 2D array.*Received: shape="):
        data.load_mat(path)


def test_load_mat_str_and_pathlike(tmp_path):
    path = _save(tmp_path, X=np.ones((2, 2)), Y=np.array([1, 2]))
    a = data.load_mat(path)
    b = data.load_mat(pathlib.Path(path))
    np.testing.assert_array_equal(a[0], b[0])


# ---------------------------------------------------------------- split


def test_split_sizes_match_paper_table_1():
    for n, n_train in [(72, 48), (73, 48), (1943, 1295), (2600, 1733), (165, 110), (50, 33)]:
        x = np.arange(n)[:, None].astype(np.float32)
        y = np.arange(n) % 2
        xt, yt, xs, ys = data.split(x, y, seed=0)
        assert len(xt) == len(yt) == n_train
        assert len(xs) == len(ys) == n - n_train
        # A partition: every sample exactly once, labels travel with features.
        np.testing.assert_array_equal(np.sort(np.concatenate([xt, xs])[:, 0]), np.arange(n))
        np.testing.assert_array_equal(yt, xt[:, 0].astype(int) % 2)


def test_split_is_seeded_and_shuffled():
    x = np.arange(30)[:, None]
    y = np.arange(30) % 3
    a = data.split(x, y, seed=1)
    b = data.split(x, y, seed=1)
    c = data.split(x, y, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0][:, 0], np.arange(20))


def test_split_stratified_keeps_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 9)
    x = np.arange(len(y))[:, None]
    xt, yt, xs, ys = data.split(x, y, seed=0, stratify=True)
    assert len(yt) == int(len(y) * 2 / 3)
    np.testing.assert_array_equal(np.bincount(yt), [40, 20, 6])
    np.testing.assert_array_equal(np.bincount(ys), [20, 10, 3])
    np.testing.assert_array_equal(y[xt[:, 0]], yt)


def test_split_stratified_total_size_with_rounding():
    y = np.array([0] * 7 + [1] * 7 + [2] * 8 + [3] * 3)
    x = np.zeros((len(y), 1))
    _, yt, _, ys = data.split(x, y, seed=3, stratify=True)
    assert len(yt) == int(25 * 2 / 3)
    assert len(ys) == 25 - len(yt)
    assert set(np.unique(yt)) == {0, 1, 2, 3}


@pytest.mark.parametrize("n", [0, 1])
def test_split_rejects_empty_part(n):
    with pytest.raises(ValueError, match=rf"empty train or test set.*Received: n_samples={n}"):
        data.split(np.zeros((n, 2)), np.zeros(n), seed=0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"Received: train_fraction="):
        data.split(np.zeros((9, 2)), np.zeros(9), seed=0, train_fraction=fraction)


def test_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match=r"same number of samples"):
        data.split(np.zeros((9, 2)), np.zeros(8), seed=0)


# ---------------------------------------------------------------- standardize


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    x_train = rng.normal(5.0, 3.0, size=(200, 4))
    x_test = rng.normal(5.0, 3.0, size=(50, 4))
    a, b = data.standardize(x_train, x_test)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=0), 1.0, atol=1e-3)
    expected = (x_test - x_train.mean(0)) / (x_train.std(0) + 1e-4)
    np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-5)


def test_standardize_constant_feature_is_zero_not_nan():
    x_train = np.array([[1.0, 2.0], [1.0, 4.0]])
    x_test = np.array([[1.0, 3.0], [2.0, 3.0]])
    a, b = data.standardize(x_train, x_test)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    np.testing.assert_array_equal(a[:, 0], 0.0)
    np.testing.assert_allclose(b[1, 0], 1.0 / 1e-4, rtol=1e-5)


# ---------------------------------------------------------------- make_madelon


def test_make_madelon_shapes_and_balance():
    x, y = data.make_madelon(n_samples=300, n_features=40, n_informative=5, n_classes=3, seed=0)
    assert x.shape == (300, 40) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
    assert np.all(np.isfinite(x))


def test_make_madelon_is_seeded():
    a = data.make_madelon(n_samples=50, n_features=10, n_informative=3, n_classes=2, seed=4)
    b = data.make_madelon(n_samples=50, n_features=10, n_informative=3, n_classes=2, seed=4)
    c = data.make_madelon(n_samples=50, n_features=10, n_informative=3, n_classes=2, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_make_madelon_redundant_features_are_linear_combinations():
    x, _ = data.make_madelon(
        n_samples=200, n_features=30, n_informative=4, n_classes=2, seed=0, n_redundant=6
    )
    # Informative + redundant span a 4-dim subspace; the 20 noise columns are full rank.
    assert np.linalg.matrix_rank(x.astype(np.float64), tol=1e-3) == 4 + 20


def test_make_madelon_is_learnable_from_informative_structure():
    # A nearest-class-mean classifier on the training half beats chance clearly.
    x, y = data.make_madelon(n_samples=600, n_features=20, n_informative=5, n_classes=2, seed=0)
    xt, yt, xs, ys = data.split(x, y, seed=0)
    xt, xs = data.standardize(xt, xs)
    ws = np.linalg.lstsq(np.c_[xt, np.ones(len(xt))], 2.0 * yt - 1.0, rcond=None)[0]
    acc = np.mean((np.c_[xs, np.ones(len(xs))] @ ws > 0) == ys)
    assert acc > 0.6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples=0"),
        (dict(n_features=0), "n_features=0"),
        (dict(n_classes=1), "n_classes=1"),
        (dict(n_informative=0), "n_informative=0"),
        (dict(n_informative=200), "n_informative=200"),
        (dict(n_informative=1, n_classes=3), "n_informative=1"),
        (dict(n_samples=1, n_classes=2), "n_samples=1"),
        (dict(n_samples=2.5), "n_samples=2.5"),
    ],
)
def test_make_madelon_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.make_madelon(**kwargs)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_synthetic():
    ds = data.load_dataset(
        None, seed=0, synthetic=dict(n_samples=90, n_features=12, n_informative=3, n_classes=3)
    )
    assert ds.name == "synthetic"
    assert ds.x_train.shape == (60, 12) and ds.x_test.shape == (30, 12)
    assert ds.n_classes == 3 and ds.n_features == 12


def test_load_dataset_from_file(tmp_path):
    rng = np.random.default_rng(0)
    path = _save(tmp_path, "tiny.mat", X=rng.integers(0, 9, (15, 4)), Y=np.arange(15) % 3 + 1)
    ds = data.load_dataset(path, seed=0, stratify=True)
    assert ds.name == "tiny" and ds.n_classes == 3
    assert len(ds.y_train) == 10 and len(ds.y_test) == 5
    np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)


# ---------------------------------------------------------------- the shared files


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared datasets folder {SHARED} not present")
@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_files_match_paper_table_1(name):
    path = SHARED / f"{name}.mat"
    if not path.exists():
        pytest.skip(f"{path} not present")
    row = _paper_rows()[name]
    x, y = data.load_mat(path)
    assert x.shape == (int(row["samples"]), int(row["features"]))
    assert int(y.max()) + 1 == int(row["classes"])
    assert set(np.unique(y)) == set(range(int(row["classes"])))
    xt, _, xs, _ = data.split(x, y, seed=0)
    assert (len(xt), len(xs)) == (int(row["train"]), int(row["test"]))
