"""Loading `.keras` files that hold this package's layers, losses and callbacks.

Keras finds a registered class only once the module that registers it has been
imported: `keras.saving.load_model("model.keras")` in a process that never imported
`keras_npset` fails with a long `TypeError` about `keras_npset>SparseDense`.
`keras_npset.load_model` is the same call with every class of the package
registered, so a user does not need to know that.
"""

from __future__ import annotations

import keras


def register_classes() -> None:
    """Registers every serialisable class of the package with Keras.

    `import keras_npset` alone loads nothing (see its docstring); this loads the
    modules that define the classes, which registers them.
    """
    import keras_npset

    keras_npset._import_all()


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a `.keras` model that uses `SparseDense`, `SETSquaredError` & co.

    The model comes back with its saved (possibly pruned) widths, its evolved
    topology and, with `compile=True`, its optimizer state, so its predictions
    are those of the saved model.

    Args:
        filepath: Path of the `.keras` file.
        custom_objects: Further custom classes or functions the file needs, as
            for `keras.saving.load_model`. Defaults to `None`.
        compile: Whether to compile the model after loading. Defaults to `True`.
        safe_mode: Whether to refuse unsafe lambda deserialisation. Defaults to
            `True`.

    Returns:
        The `keras.Model`.
    """
    register_classes()
    return keras.saving.load_model(
        filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
    )
