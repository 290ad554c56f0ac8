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
"""

from keras_npset.callbacks import NeuronPruning, SETEvolution, TensorBoard, TopologyLogger
from keras_npset.export import to_dense_model
from keras_npset.features import (
    FeatureSelection,
    InputPruning,
    feature_importance,
    feature_ranking,
)
from keras_npset.graph import topology_stats
from keras_npset.layers import SparseDense
from keras_npset.losses import SETSquaredError
from keras_npset.saving import load_model
from keras_npset.schedules import PruningSchedule, final_width

__version__ = "0.1.0"

__all__ = [
    "FeatureSelection",
    "InputPruning",
    "NeuronPruning",
    "PruningSchedule",
    "SETEvolution",
    "SETSquaredError",
    "SparseDense",
    "TensorBoard",
    "TopologyLogger",
    "feature_importance",
    "feature_ranking",
    "final_width",
    "load_model",
    "to_dense_model",
    "topology_stats",
]
