"""The paper's models (Liu, Mocanu & Pechenizkiy 2019, Section 4) and their callbacks.

Methods, all MLPs with ReLU hidden layers (two in the paper):

- `"set"`: SET-MLP, sparse layers evolved by `SETEvolution`.
- `"npset"`: SET-MLP with `NeuronPruning` of every hidden layer.
- `"npset_1st"` / `"npset_2nd"`: neuron pruning of the first / second hidden layer only.
- `"direct_set"`: SET-MLP built directly at NPSET's final widths.
- `"direct_fc"`: dense MLP at NPSET's final widths.
- `"dense"`: dense MLP at the full widths (Table 3's FC-MLP).

Sparse methods use a sparse output layer too. The output is sigmoid for the
paper's loss (`keras_npset.losses.SETSquaredError`) and Keras's MSE, softmax for
cross-entropy.
"""

from __future__ import annotations

import keras

from keras_npset.experiments.config import (
    METHODS,
    SIGMOID_LOSSES,
    SPARSE_METHODS,
    Config,
    pruned_hidden,
)
from keras_npset.validation import check_choice, check_widths

OUTPUT_NAME = "output"
# Epochs between the degree histograms of a run's TensorBoard log. Writing them
# takes a few hundred eager TensorFlow ops, ~60 ms on the 2-core CPU: every
# epoch, that was about as long as a whole epoch of a small network.
TOPOLOGY_HISTOGRAM_FREQ = 10


def hidden_names(n_hidden: int) -> list[str]:
    """Layer names of the hidden layers: `["hidden_1", "hidden_2", ...]`."""
    return [f"hidden_{i + 1}" for i in range(n_hidden)]


def pruned_layers(method: str, n_hidden: int) -> list[str]:
    """Names of the hidden layers whose neurons `method` prunes (see `config.pruned_hidden`)."""
    names = hidden_names(n_hidden)
    return [names[i] for i in pruned_hidden(method, n_hidden)]


def _check_method(method: str) -> None:
    check_choice("method", method, METHODS)


def final_widths(
    hidden: list[int],
    alpha: float,
    start: int,
    prune_epochs: int,
    epochs: int,
    min_units: int = 1,
    layers: list[int] | None = None,
) -> list[int]:
    """Hidden widths after NPSET's pruning schedule within a run of `epochs` epochs.

    Args:
        hidden: initial widths.
        alpha: fraction `floor(alpha * n)` removed per event.
        start: first pruning epoch (0-based).
        prune_epochs: further pruning epochs after the first.
        epochs: total epochs of the run (events past the end do not happen).
        min_units: lower bound of a width. Defaults to `1`.
        layers: indices of the pruned layers. Defaults to `None` (all).

    Returns:
        The widths, e.g. `[66, 66]` for `[300, 300]` with the paper's schedule.
    """
    from keras_npset.schedules import PruningSchedule, final_width

    n_events = len(PruningSchedule(start, prune_epochs).events(epochs))
    layers = range(len(hidden)) if layers is None else layers
    return [
        final_width(h, alpha, n_events, min_units) if i in layers else h
        for i, h in enumerate(hidden)
    ]


def widths_for(method: str, cfg: Config) -> list[int]:
    """The hidden widths `method` is built with: NPSET's final ones for `direct_*`."""
    _check_method(method)
    m = cfg.model
    if method in ("direct_set", "direct_fc"):
        return final_widths(
            m.hidden, m.alpha, m.start, m.prune_epochs, cfg.train.epochs, m.min_units
        )
    return list(m.hidden)


def _dense_initializer(name: str, seed: int | None):
    if name == "set_normal":
        return keras.initializers.RandomNormal(stddev=0.1, seed=seed)
    return keras.initializers.get({"class_name": name, "config": {"seed": seed}})


def build_model(
    method: str,
    n_features: int,
    n_classes: int,
    hidden: list[int],
    epsilon: float = 10.0,
    seed: int | None = None,
    loss: str = "set_squared_error",
    kernel_impl: str = "auto",
    kernel_initializer: str = "glorot_uniform",
    dense_initializer: str = "glorot_uniform",
    feature_selection: bool = False,
) -> keras.Model:
    """Builds (does not compile) the MLP of `method`.

    Args:
        method: one of `METHODS`.
        n_features: input width.
        n_classes: output width (one unit per class, also for 2 classes).
        hidden: hidden widths (already the final ones for `direct_*`, see `widths_for`).
        epsilon: SET sparsity of every sparse layer. Defaults to `10.0`.
        seed: topology and initialiser seed; layer `i` gets `seed + i`. Defaults to `None`.
        loss: the training loss, which decides the output activation: sigmoid for
            `"set_squared_error"` (the paper's code) and `"mse"`, softmax for
            `"categorical_crossentropy"`. Defaults to `"set_squared_error"`.
        kernel_impl: `SparseDense` kernel implementation. Defaults to `"auto"`.
        kernel_initializer: initial weights of the sparse layers (`SparseDense`).
            Defaults to `"glorot_uniform"`.
        dense_initializer: initial weights of the dense layers (`dense`, `direct_fc`),
            same names. Defaults to `"glorot_uniform"`.
        feature_selection: put a `features.FeatureSelection` layer named
            `"feature_selection"` between the input and `hidden_1`, for input pruning
            (sparse methods only). Defaults to `False`.

    Returns:
        A functional `keras.Model` with layers `hidden_1, ..., output`.
    """
    _check_method(method)
    check_widths("hidden", hidden)
    output_activation = "sigmoid" if loss in SIGMOID_LOSSES else "softmax"
    names = hidden_names(len(hidden)) + [OUTPUT_NAME]
    widths = list(hidden) + [n_classes]
    activations = ["relu"] * len(hidden) + [output_activation]

    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    if feature_selection:
        if method not in SPARSE_METHODS:
            raise ValueError(
                f"`feature_selection` needs a sparse method ({', '.join(SPARSE_METHODS)}). "
                f"Received: method={method!r}"
            )
        from keras_npset.features import FeatureSelection

        x = FeatureSelection(name="feature_selection")(x)
    for i, (name, units, activation) in enumerate(zip(names, widths, activations, strict=True)):
        layer_seed = None if seed is None else seed + i
        if method in SPARSE_METHODS:
            from keras_npset.layers import SparseDense

            layer = SparseDense(
                units,
                epsilon=epsilon,
                activation=activation,
                kernel_initializer=kernel_initializer,
                kernel_impl=kernel_impl,
                seed=layer_seed,
                name=name,
            )
        else:
            layer = keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=_dense_initializer(dense_initializer, layer_seed),
                name=name,
            )
        x = layer(x)
    return keras.Model(inputs, x, name=method)


def callbacks_for(method: str, cfg: Config, log_dir: str | None = None) -> list:
    """The topology callbacks of `method`: `SETEvolution`, `NeuronPruning`, `InputPruning`.

    They add `params/<layer>`, `neurons/<layer>`, `density/<layer>` and
    `compression` to the epoch logs, so History and TensorBoard see them.

    Args:
        method: one of `METHODS`.
        cfg: the experiment config (`model.zeta`, `alpha`, `start`, ...).
        log_dir: TensorBoard run folder; if given, a `TopologyLogger` writes degree
            histograms under `log_dir/topology` every `TOPOLOGY_HISTOGRAM_FREQ`
            epochs. Defaults to `None` (none).

    Returns:
        A list of callbacks (empty for dense methods).
    """
    _check_method(method)
    if method not in SPARSE_METHODS:
        return []
    from keras_npset.callbacks import NeuronPruning, SETEvolution, TopologyLogger

    m, seed = cfg.model, cfg.train.seed
    callbacks: list = [SETEvolution(zeta=m.zeta, init=m.init, seed=seed)]
    layers = pruned_layers(method, len(m.hidden))
    if layers:
        callbacks.append(
            NeuronPruning(
                alpha=m.alpha,
                start=m.start,
                epochs=m.prune_epochs,
                layers=layers,
                criterion=m.criterion,
                min_units=m.min_units,
                seed=seed,
            )
        )
    if m.input_k:
        from keras_npset.features import InputPruning

        callbacks.append(
            InputPruning(
                k=m.input_k,
                start=m.input_start,
                epochs=m.input_prune_epochs,
                criterion=m.feature_criterion,
            )
        )
    if log_dir:
        callbacks.append(TopologyLogger(log_dir, histogram_freq=TOPOLOGY_HISTOGRAM_FREQ))
    return callbacks
