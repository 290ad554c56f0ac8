"""Shared test set-up: quiet TensorFlow, seeded randomness, small helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Seed every generator and reset Keras's layer-name counters per test."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 3 columns, so that small layers exercise the tile order."""
    from keras_npset import topology

    monkeypatch.setattr(topology, "TILE_COLS", 3)
    return 3
