"""Data loading, splitting and standardisation for the paper's experiments.

NumPy/SciPy only (no Keras), so it can be tested and reused on its own.

- `load_mat` reads scikit-feature (ASU) `.mat` files (keys `X`/`Y` or `fea`/`gnd`).
- `split` makes the paper's 2/3 - 1/3 train/test split (Table 1: `int(n * 2 / 3)` training samples).
- `standardize` scales with the training mean and std + 1e-4, as the original SET code.
- `make_madelon` is a Madelon-style synthetic generator (Guyon 2003) for offline runs and tests.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
import scipy.sparse

from keras_npset.validation import check_int, check_number

if TYPE_CHECKING:
    from keras_npset.experiments.config import DataConfig

_KEY_PAIRS = (("X", "Y"), ("fea", "gnd"))
STD_EPSILON = 1e-4


@dataclasses.dataclass
class Dataset:
    """A train/test split ready for training.

    Attributes:
        x_train: float32 array, (train samples, features).
        y_train: int64 labels in `0..n_classes-1`.
        x_test: float32 array, (test samples, features).
        y_test: int64 labels in `0..n_classes-1`.
        n_classes: number of classes.
        name: a short name for reports (file stem or `"synthetic"`).
        train_index: the rows of the data file (or synthetic array) that form
            `x_train`, in order; `None` when the caller built the split.
        test_index: likewise for `x_test`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str = "dataset"
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _to_dense(value: object, key: str, path: str) -> np.ndarray:
    if scipy.sparse.issparse(value):
        value = value.toarray()
    arr = np.asarray(value)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"`{key}` in {path!r} must be numeric. Received: dtype={arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"`{key}` in {path!r} must be real-valued. Received: dtype={arr.dtype}")
    return arr


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps arbitrary numeric labels to `0..K-1` (sorted order).

    Returns:
        `(y, classes)`: int64 codes and the original label values.
    """
    classes, y = np.unique(labels, return_inverse=True)
    return y.astype(np.int64).reshape(-1), classes


def load_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Loads a scikit-feature `.mat` file.

    Args:
        path: path to a MATLAB file with features under `X` (or `fea`), shape
            (samples, features), and labels under `Y` (or `gnd`), shape (samples,) or
            (samples, 1). Sparse matrices are densified.

    Returns:
        `(X, y)`: X float32 (samples, features); y int64 labels mapped to
        `0..K-1` in sorted order of the original labels.

    Raises:
        ValueError: if the file is missing or unreadable, lacks the keys, holds
            non-numeric, non-finite or empty data, the label count differs from the
            sample count, or there is only one class.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Data file not found. Received: path={path!r}")
    try:
        contents = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise ValueError(
            f"Cannot read MATLAB file ({type(e).__name__}: {e}). Received: path={path!r}"
        ) from None
    found = sorted(k for k in contents if not k.startswith("__"))
    for x_key, y_key in _KEY_PAIRS:
        if x_key in contents and y_key in contents:
            break
    else:
        raise ValueError(
            f"{path!r} must hold features and labels under 'X'/'Y' or 'fea'/'gnd'. "
            f"Received: keys={found}"
        )
    x = _to_dense(contents[x_key], x_key, path)
    labels = _to_dense(contents[y_key], y_key, path)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            f"`{x_key}` in {path!r} must be a non-empty 2D array (samples x features). "
            f"Received: shape={x.shape}"
        )
    raw_label_shape = labels.shape
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise ValueError(
            f"`{y_key}` in {path!r} must be a vector of labels. Received: shape={labels.shape}"
        )
    if labels.shape[0] != x.shape[0]:
        raise ValueError(
            f"{path!r} has {x.shape[0]} samples but {labels.shape[0]} labels. "
            f"Received: {x_key}.shape={x.shape}, {y_key}.shape={raw_label_shape}"
        )
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"`{x_key}` in {path!r} contains NaN or infinite values. "
            f"Received: n_nonfinite={int(bad.sum())}"
        )
    if not np.all(np.isfinite(labels.astype(np.float64))):
        raise ValueError(f"`{y_key}` in {path!r} contains NaN or infinite labels.")
    y, classes = encode_labels(labels)
    if len(classes) < 2:
        raise ValueError(
            f"{path!r} must contain at least 2 classes. Received: classes={classes.tolist()}"
        )
    return x, y


def split(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    train_fraction: float = 2 / 3,
    stratify: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles and splits into train and test sets.

    The training set gets `int(n * train_fraction)` samples, which for the
    default 2/3 gives the paper's Table 1 sizes (leukemia: 72 -> 48 / 24).

    Args:
        x: features, (samples, features).
        y: labels, (samples,).
        seed: seed of the shuffle.
        train_fraction: fraction of samples for training, in (0, 1).
            Defaults to `2 / 3`.
        stratify: if True, each class is split separately (its share rounded
            so that the total training size stays `int(n * train_fraction)`), so
            both parts keep the class proportions. Defaults to `False`.

    Returns:
        `(x_train, y_train, x_test, y_test)`.
    """
    train_idx, test_idx = split_indices(x, y, seed, train_fraction, stratify)
    x = np.asarray(x)
    y = np.asarray(y)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def split_indices(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    train_fraction: float = 2 / 3,
    stratify: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows `split` puts into the training and the test set, in their order.

    Same arguments as `split`; `split(x, y, ...)` is `x[train], y[train],
    x[test], y[test]` for `train, test = split_indices(x, y, ...)`.

    Returns:
        `(train_idx, test_idx)`: int64 row indices.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    check_number("train_fraction", train_fraction, 0, 1, open_min=True, open_max=True)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`x` and `y` must have the same number of samples. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    n = x.shape[0]
    n_train = int(n * train_fraction)
    if n_train == 0 or n_train == n:
        raise ValueError(
            f"The split leaves an empty train or test set ({n_train} / {n - n_train}). "
            f"Received: n_samples={n}, train_fraction={train_fraction}"
        )
    rng = np.random.default_rng(seed)
    if not stratify:
        order = rng.permutation(n)
        train_idx, test_idx = order[:n_train], order[n_train:]
    else:
        train_idx, test_idx = _stratified_indices(y, n_train, rng)
    return np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64)


def _stratified_indices(
    y: np.ndarray, n_train: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n_train / len(y)
    share = np.floor(exact).astype(int)
    # Largest remainders get the leftover training slots (ties: larger class first).
    leftover = n_train - share.sum()
    order = np.lexsort((-counts, -(exact - share)))
    share[order[:leftover]] += 1
    train_parts, test_parts = [], []
    for cls, k in zip(classes, share, strict=True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        train_parts.append(idx[:k])
        test_parts.append(idx[k:])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardises both sets with the training mean and std (+1e-4).

    As in the original SET code: `(x - mean) / (std + 1e-4)`; constant features
    become 0 instead of NaN.

    Returns:
        `(x_train, x_test)` as float32.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0) + STD_EPSILON
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def make_madelon(
    n_samples: int = 600,
    n_features: int = 100,
    n_informative: int = 5,
    n_classes: int = 2,
    seed: int = 0,
    n_redundant: int | None = None,
    n_clusters_per_class: int = 2,
    class_sep: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Madelon-style synthetic classification data (Guyon, NIPS 2003 challenge).

    Each class owns `n_clusters_per_class` Gaussian clusters centred on vertices
    of an `n_informative`-dimensional hypercube of side `2 * class_sep`; then
    `n_redundant` features are random linear combinations of the informative
    ones and the rest are pure N(0, 1) noise. Columns are shuffled, so the
    informative ones are not first.

    Args:
        n_samples: number of samples. Defaults to `600`.
        n_features: total number of features. Defaults to `100`.
        n_informative: number of informative features. Defaults to `5`.
        n_classes: number of classes. Defaults to `2`.
        seed: random seed. Defaults to `0`.
        n_redundant: number of redundant (linear combination) features.
            Defaults to `n_informative` (capped to what fits in `n_features`).
        n_clusters_per_class: clusters per class. Defaults to `2`.
        class_sep: half the hypercube side. Defaults to `1.0`.

    Returns:
        `(X, y)`: X float32 (samples, features), y int64 in `0..n_classes-1`.
    """
    check_int("n_samples", n_samples, 1)
    check_int("n_features", n_features, 1)
    check_int("n_informative", n_informative, 1, maximum=n_features)
    check_int("n_classes", n_classes, 2)
    check_int("n_clusters_per_class", n_clusters_per_class, 1)
    n_clusters = n_classes * n_clusters_per_class
    if n_clusters > 2**n_informative:
        raise ValueError(
            f"{n_clusters} clusters need more hypercube vertices than 2**n_informative. "
            f"Received: n_informative={n_informative}"
        )
    if n_samples < n_classes:
        raise ValueError(
            f"`n_samples` must be at least `n_classes`. "
            f"Received: n_samples={n_samples}, n_classes={n_classes}"
        )
    if n_redundant is None:
        n_redundant = n_informative
    n_redundant = max(0, min(n_redundant, n_features - n_informative))
    rng = np.random.default_rng(seed)

    # Distinct hypercube vertices as cluster centres.
    vertex_ids = rng.choice(2**n_informative, size=n_clusters, replace=False)
    bits = (vertex_ids[:, None] >> np.arange(n_informative)) & 1
    centroids = (2.0 * bits - 1.0) * class_sep

    cluster = np.arange(n_samples) % n_clusters  # balanced clusters
    y = (cluster % n_classes).astype(np.int64)
    informative = rng.standard_normal((n_samples, n_informative))
    # Random covariance per cluster, as Madelon.
    for c in range(n_clusters):
        rows = cluster == c
        mix = rng.uniform(-1.0, 1.0, size=(n_informative, n_informative))
        informative[rows] = informative[rows] @ mix + centroids[c]

    redundant = informative @ rng.uniform(-1.0, 1.0, size=(n_informative, n_redundant))
    noise = rng.standard_normal((n_samples, n_features - n_informative - n_redundant))
    x = np.hstack([informative, redundant, noise])
    x = x[:, rng.permutation(n_features)]
    order = rng.permutation(n_samples)
    return x[order].astype(np.float32), y[order]


def load_dataset(
    path: str | None,
    seed: int,
    stratify: bool = False,
    synthetic: dict | None = None,
    train_fraction: float = 2 / 3,
) -> Dataset:
    """Loads (or generates), splits and standardises a dataset.

    Args:
        path: scikit-feature `.mat` file; empty or `None` for synthetic data.
        seed: seed of the split (and of the synthetic generator).
        stratify: stratified split. Defaults to `False`.
        synthetic: keyword arguments for `make_madelon`. Defaults to its defaults.
        train_fraction: see `split`. Defaults to `2 / 3`.

    Returns:
        A standardised `Dataset`.
    """
    if path:
        x, y = load_mat(path)
        name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    else:
        x, y = make_madelon(seed=seed, **(synthetic or {}))
        name = "synthetic"
    train_idx, test_idx = split_indices(x, y, seed, train_fraction, stratify=stratify)
    x_train, x_test = standardize(x[train_idx], x[test_idx])
    n_classes = int(y.max()) + 1
    return Dataset(x_train, y[train_idx], x_test, y[test_idx], n_classes, name, train_idx, test_idx)


def load_from_config(data_cfg: DataConfig, seed: int) -> Dataset:
    """`load_dataset` with the settings of a config's `[data]` section."""
    d = data_cfg
    return load_dataset(
        d.path,
        seed,
        stratify=d.stratify,
        train_fraction=d.train_fraction,
        synthetic=dict(
            n_samples=d.synthetic_samples,
            n_features=d.synthetic_features,
            n_informative=d.synthetic_informative,
            n_classes=d.synthetic_classes,
        ),
    )
