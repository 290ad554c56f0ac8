"""Deployable copies of sparse models, for runtimes without sparse kernels.

Two ways to ship a model that contains `SparseDense` layers:

- `to_dense_model(model)`: a plain Keras model of the same architecture in
  which every `SparseDense` layer is a `keras.layers.Dense` of its *current*
  widths holding the densified kernel. It needs nothing from this package to
  load or run (TFLite, TF.js, ONNX converters, any Keras backend). After
  neuron pruning it is small because the hidden layers are narrow; the
  kernels themselves are dense, so it is meant for inference only.
- `model.export(path)` (Keras 3's `Model.export`): a TensorFlow SavedModel
  for TF Serving that keeps the sparse kernels (the `indices` and `values`
  are baked into the graph as variables). `tf.saved_model.load(path).serve(x)`
  returns the model's predictions; it needs TensorFlow but not this package.
  The default `"gather"` kernel path is XLA-compiled, and the SavedModel then
  contains functions marked must-compile: a serving binary without XLA cannot
  run them. `export_saved_model(model, path)` exports through TensorFlow's
  plain `sparse_dense_matmul` kernel instead.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_npset import _keras, kernels
from keras_npset.features import FeatureSelection, find_selection
from keras_npset.graph import sparse_layers
from keras_npset.layers import SparseDense
from keras_npset.validation import check_dir


def _dense_twin(layer: SparseDense) -> keras.layers.Dense:
    return keras.layers.Dense(
        layer.units,
        activation=layer.activation,
        use_bias=layer.use_bias,
        name=layer.name,
        dtype=layer.dtype_policy,
    )


def _clone_layer(layer):
    if isinstance(layer, SparseDense):
        return _dense_twin(layer)
    if isinstance(layer, keras.Model):
        return to_dense_model(layer)
    if isinstance(layer, FeatureSelection):
        # The next layer's dense kernel gets zero rows for the pruned features instead.
        return keras.layers.Identity(name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def _copy_weights(source, target) -> None:
    selection = find_selection(source)
    for layer in source.layers:
        if not layer.weights or isinstance(layer, keras.Model):
            continue  # input layers; nested models were copied by to_dense_model
        twin = target.get_layer(layer.name)
        if isinstance(layer, FeatureSelection):
            continue
        if isinstance(layer, SparseDense):
            weights = [layer.to_dense_kernel()]
            if selection is not None and twin.kernel.shape[0] != layer.input_dim:
                # Fed by an input-pruned FeatureSelection: scatter the kept rows.
                full = np.zeros((selection.n_features, layer.units), weights[0].dtype)
                full[selection.kept_indices()] = weights[0]
                weights = [full]
            if layer.use_bias:
                weights.append(layer.live_bias())
            twin.set_weights(weights)
        else:
            twin.set_weights(layer.get_weights())


def _has_inputs(model) -> bool:
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def to_dense_model(model: keras.Model) -> keras.Model:
    """A plain Keras copy of `model` with every SparseDense layer made dense.

    Each `SparseDense` layer becomes a `keras.layers.Dense` with the same
    name, current `units`, activation, bias and dtype policy, whose kernel is
    the densified sparse kernel (`SparseDense.to_dense_kernel`). A
    `FeatureSelection` layer (input pruning) becomes an `Identity`, and the
    Dense layer after it gets zero kernel rows for the pruned features, so the
    copy takes the full feature vector too. Every other
    layer is re-created from its config and given a copy of its weights;
    nested Sequential/functional models are converted recursively. The copy
    makes the same predictions (up to float summation order) and loads
    without this package. It is not compiled.

    Args:
        model: A built Sequential or functional Keras model (subclassed
            models cannot be cloned layer by layer).

    Returns:
        A new, uncompiled `keras.Model` of the same kind.

    Example:

    ```python
    dense = to_dense_model(model)
    dense.save("deploy.keras")  # no keras_npset needed to load it
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected `model` to be a keras.Model. Received: model={model!r}")
    if not (isinstance(model, keras.Sequential) or _keras.is_functional(model)):
        raise ValueError(
            "Expected `model` to be a Sequential or functional model (subclassed models "
            f"cannot be cloned layer by layer). Received: model={model!r}"
        )
    if not model.built or not _has_inputs(model):
        raise ValueError(
            "Expected `model` to be built with a known input shape (call it on data or "
            f"give it a keras.Input). Received: model={model!r}"
        )
    dense = keras.models.clone_model(model, clone_function=_clone_layer)
    if not dense.built:  # a Sequential built from data, without an Input layer
        dense.build(model.inputs[0].shape)
    _copy_weights(model, dense)
    return dense


def export_saved_model(model, filepath, kernel_impl="sparse_dense_matmul", **kwargs) -> None:
    """`model.export(filepath)` with every SparseDense layer using `kernel_impl`.

    The layers' `kernel_impl` is switched for the export only and restored
    afterwards. With the default, the SavedModel uses TensorFlow's
    `SparseTensorDenseMatMul` op and no XLA-compiled function, so any
    TensorFlow runtime (TF Serving builds without XLA included) can serve
    it; `tf.saved_model.load(filepath).serve(x)` gives the predictions.

    Args:
        model: A built Keras model.
        filepath: Directory to write the SavedModel to.
        kernel_impl: One of `"sparse_dense_matmul"`, `"gather"`, `"csr"`, `"auto"`
            (see `SparseDense`). Defaults to `"sparse_dense_matmul"`.
        **kwargs: Passed to `model.export` (e.g. `verbose`,
            `input_signature`).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected `model` to be a keras.Model. Received: model={model!r}")
    check_dir("filepath", filepath)
    kernels.resolve(kernel_impl)  # validates
    layers = sparse_layers(model)
    saved = []
    try:
        for layer in layers:
            saved.append(layer.use_kernel(kernel_impl))
        model.export(os.fspath(filepath), format="tf_saved_model", **kwargs)
    finally:
        for layer, impl in zip(layers, saved, strict=False):
            layer.use_kernel(impl)
