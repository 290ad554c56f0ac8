"""keras-npset: truly sparse Keras 3 layers with SET and NPSET.

- `SparseDense`: a Dense-like layer whose kernel is stored as sparse indices
  and values, never densified.
- `SETEvolution`: Sparse Evolutionary Training (Mocanu et al. 2018) as a callback.
- `NeuronPruning`: neuron pruning of NPSET (Liu, Mocanu & Pechenizkiy 2019),
  physically narrowing hidden layers during `fit`.
- `SETSquaredError`: the original SET code's training signal as a Keras loss.
- `TopologyLogger`: degree histograms for TensorBoard.
- `TensorBoard`: Keras's TensorBoard callback with weight histograms of the live
  sparse values (no int32 indices) and a nameable validation run.
- `load_model`: `keras.saving.load_model` with the package's classes registered.
- `feature_importance` / `feature_ranking`: input features ranked by the
  strength of their connections; `InputPruning` + `FeatureSelection` prune
  input neurons during training (feature selection).
- `to_dense_model`: a plain Keras copy for runtimes without sparse kernels.
- `TrainingStateCheckpoint` / `save_training_state` / `restore_training_state` /
  `has_training_state`: exact resume of a SET or NPSET `fit` after a crash
  (`keras.callbacks.BackupAndRestore` cannot restore pruned widths).

`import keras_npset` imports neither TensorFlow nor Keras: the public names load
on first use (PEP 562), all modules together, so that from then on every
serialisable class of the package is registered with Keras, as an eager import
would leave it. Submodules that need no TensorFlow (`keras_npset.topology`,
`schedules`, `choices`, `validation`, `experiments.config`) can thus be imported
on their own, cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Every public name and the module that defines it.
_EXPORTS = {
    "FeatureSelection": "keras_npset.features",
    "InputPruning": "keras_npset.features",
    "NeuronPruning": "keras_npset.callbacks",
    "PruningSchedule": "keras_npset.schedules",
    "SETEvolution": "keras_npset.callbacks",
    "SETSquaredError": "keras_npset.losses",
    "SparseDense": "keras_npset.layers",
    "TensorBoard": "keras_npset.callbacks",
    "TopologyLogger": "keras_npset.callbacks",
    "TrainingStateCheckpoint": "keras_npset.checkpoint",
    "feature_importance": "keras_npset.features",
    "feature_ranking": "keras_npset.features",
    "final_width": "keras_npset.schedules",
    "has_training_state": "keras_npset.checkpoint",
    "load_model": "keras_npset.saving",
    "restore_training_state": "keras_npset.checkpoint",
    "save_training_state": "keras_npset.checkpoint",
    "to_dense_model": "keras_npset.export",
    "topology_stats": "keras_npset.graph",
}

__all__ = list(_EXPORTS)


def _import_all() -> None:
    """Imports every public name into the package (and so registers every Keras class)."""
    for name, module in _EXPORTS.items():
        globals()[name] = getattr(importlib.import_module(module), name)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _import_all()
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ above
    from keras_npset.callbacks import NeuronPruning as NeuronPruning
    from keras_npset.callbacks import SETEvolution as SETEvolution
    from keras_npset.callbacks import TensorBoard as TensorBoard
    from keras_npset.callbacks import TopologyLogger as TopologyLogger
    from keras_npset.checkpoint import TrainingStateCheckpoint as TrainingStateCheckpoint
    from keras_npset.checkpoint import has_training_state as has_training_state
    from keras_npset.checkpoint import restore_training_state as restore_training_state
    from keras_npset.checkpoint import save_training_state as save_training_state
    from keras_npset.export import to_dense_model as to_dense_model
    from keras_npset.features import FeatureSelection as FeatureSelection
    from keras_npset.features import InputPruning as InputPruning
    from keras_npset.features import feature_importance as feature_importance
    from keras_npset.features import feature_ranking as feature_ranking
    from keras_npset.graph import topology_stats as topology_stats
    from keras_npset.layers import SparseDense as SparseDense
    from keras_npset.losses import SETSquaredError as SETSquaredError
    from keras_npset.saving import load_model as load_model
    from keras_npset.schedules import PruningSchedule as PruningSchedule
    from keras_npset.schedules import final_width as final_width
