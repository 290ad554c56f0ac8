"""Typed experiment configuration: defaults, TOML files and `--set` overrides.

All defaults live in the dataclasses below and are the paper's setting
(Liu, Mocanu & Pechenizkiy 2019, with the values it leaves unstated recovered from
its own tables: `docs/paper.md`). Config files hold only what differs from them. With no file,
`load_config` applies `QUICK_RUN`, a small synthetic run that finishes in
about a minute on two CPU cores (`configs/default.toml` holds the same values).

Example:

```python
cfg = load_config("configs/leukemia.toml", ["train.epochs=5", "model.hidden=[300,300]"])
```

This module imports nothing that imports TensorFlow or Keras (`tests/test_config.py`
checks it), so `train.py` rejects a bad file or `--set` at once.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from typing import Any

# The valid choices of library options, from the library's TensorFlow-free modules.
from keras_npset.choices import (
    IMPORTANCE_CRITERIA,
    KERNEL_IMPLEMENTATIONS,
    KERNEL_INITIALIZERS,
    NEW_VALUE_INITS,
    XLA_KERNEL_IMPLEMENTATIONS,
)
from keras_npset.topology import CRITERIA
from keras_npset.validation import (
    check_choice,
    check_dir,
    check_fraction,
    check_int,
    check_number,
    check_positive,
    check_widths,
)

METHODS = ("set", "npset", "npset_1st", "npset_2nd", "direct_set", "direct_fc", "dense")
SPARSE_METHODS = ("set", "npset", "npset_1st", "npset_2nd", "direct_set")
LOSSES = ("set_squared_error", "mse", "categorical_crossentropy")
# Losses trained on a sigmoid output layer (the others use softmax).
SIGMOID_LOSSES = ("set_squared_error", "mse")


def pruned_hidden(method: str, n_hidden: int) -> list[int]:
    """The hidden layers (0-based) whose neurons `method` prunes; empty for the others.

    `npset` prunes every hidden layer, `npset_1st` the first, `npset_2nd` the second.

    Raises:
        ValueError: for `npset_2nd` with fewer than 2 hidden layers.
    """
    if method == "npset":
        return list(range(n_hidden))
    if method == "npset_1st":
        return [0] if n_hidden else []
    if method == "npset_2nd":
        if n_hidden < 2:
            raise ValueError(
                f"`npset_2nd` needs at least 2 hidden layers. Received: n_hidden={n_hidden}"
            )
        return [1]
    return []


class ConfigError(ValueError):
    """A config file or override is invalid; the message is one line."""


@dataclasses.dataclass
class DataConfig:
    # scikit-feature .mat file (keys X/Y or fea/gnd); "" = built-in synthetic data.
    path: str = ""
    # Fraction of samples used for training; the paper uses int(n * 2/3) (Table 1).
    train_fraction: float = 2 / 3
    # Keep class proportions in both parts (the paper's split is a plain shuffle).
    stratify: bool = False
    # Madelon-style synthetic data (used only when `path` is empty).
    synthetic_samples: int = 600
    synthetic_features: int = 100
    synthetic_informative: int = 5
    synthetic_classes: int = 2


@dataclasses.dataclass
class ModelConfig:
    # One of METHODS: set, npset, npset_1st, npset_2nd, direct_set, direct_fc, dense.
    method: str = "npset"
    # Widths of the hidden layers (the paper: two equal layers, Table 3's `hidden`).
    hidden: list[int] = dataclasses.field(default_factory=lambda: [1000, 1000])
    # Erdos-Renyi sparsity: density = epsilon * (n_in + n_out) / (n_in * n_out).
    epsilon: float = 10.0
    # Fraction of weights removed and regrown by SET after every epoch.
    zeta: float = 0.3
    # Fraction floor(alpha * n) of hidden neurons removed at each pruning event.
    alpha: float = 0.04
    # First pruning epoch (beta, 0-based) and number of epochs after it (gamma):
    # events at every epoch start..start+prune_epochs inclusive, 41 for (10, 40).
    start: int = 10
    prune_epochs: int = 40
    # Initial value of connections regrown by SET: "normal" (N(0,1)/10, original) or "zeros".
    init: str = "normal"
    # Which connections count when choosing neurons to remove: "out" (connections to the
    # next layer, the paper's "neurons with very few output connections"), "total" or "in".
    # "out" is the one that reproduces Table 3's NPSET parameter counts (measured on the
    # eight datasets at hand: benchmarks/README.md, "Paper fidelity").
    criterion: str = "out"
    # Neuron pruning never shrinks a layer below this many units.
    min_units: int = 1
    # Sparse kernel implementation of SparseDense: "auto", "gather", "csr" or
    # "sparse_dense_matmul" (see keras_npset.kernels; jit_compile needs auto or gather).
    kernel_impl: str = "auto"
    # Initial weights of the sparse layers: "set_normal", N(0, 1) / 10 as the original SET
    # code, or a Keras variance-scaling name (the fans of a sparse layer are its average
    # degrees). Measured with the paper's loss, both reach the same accuracy
    # (benchmarks/README.md, "Paper fidelity"); the original's is the paper default.
    kernel_initializer: str = "set_normal"
    # Initial weights of the dense layers (methods dense and direct_fc), same names.
    # N(0, 1) / 10 is far too large for a dense layer with thousands of inputs (pre-
    # activations ~ sqrt(fan_in) / 10): the sigmoid output saturates and training stalls
    # (Prostate_GE direct_fc, max / final test accuracy: 64.7 / 41.2 with set_normal,
    # 76.5 / 76.5 with glorot_uniform; paper 79.41). Keras's default is the baseline's.
    dense_initializer: str = "glorot_uniform"
    # Input pruning (feature selection, keras_npset.features.InputPruning): keep this many
    # input features, removing the weakest input neurons at the beginning of epochs
    # input_start..input_start+input_prune_epochs. 0 = off. Sparse methods only.
    input_k: int = 0
    input_start: int = 10
    input_prune_epochs: int = 40
    # How input features are scored, for input pruning and for every run's features.json
    # (keras_npset.feature_importance): "path", "strength" or "degree".
    feature_criterion: str = "path"


@dataclasses.dataclass
class TrainConfig:
    # The paper does not state it; 100 leaves 50 epochs after pruning ends (docs/paper.md).
    epochs: int = 100
    batch_size: int = 2
    # SGD with momentum, as the original SET code.
    learning_rate: float = 0.01
    momentum: float = 0.9
    # Per-step decay W -= weight_decay * W, the form of the original SET code (NOT
    # multiplied by the learning rate; Keras subtracts lr * wd * W, so the optimizer gets
    # weight_decay / learning_rate, see `keras_weight_decay`). 0: the paper trains its
    # models "without any explicit regularization methods e.g. dropout, L1 and L2
    # Regularization"; the SET code's own 0.0002 leaves madelon's NPSET 14% above Table 3's
    # parameter count (docs/paper.md).
    weight_decay: float = 0.0
    # Seeds the split, the synthetic data, the topology and Keras (set_random_seed).
    seed: int = 0
    # "set_squared_error": the paper's code's training signal on a sigmoid output
    # (keras_npset.losses.SETSquaredError: delta (p - y) * s'(p) per unit, not divided by
    # the number of classes). "mse" is Keras's (sigmoid output, a 2/C smaller gradient);
    # "categorical_crossentropy" uses a softmax output.
    loss: str = "set_squared_error"
    # 0 silent, 1 Keras's progress bar, 2 one short line per epoch (loss, train and test
    # accuracy, neurons, parameters, seconds) and one per pruning event.
    verbose: int = 2
    # Training steps per call into TensorFlow (Keras's `steps_per_execution`): above 1 it
    # saves Keras's fixed per-step cost, most of a step at batch 2, and trains the same
    # steps to the same weights (tested). The runner uses the largest divisor of the steps
    # per epoch not above it, so SET and pruning still act between whole epochs. The
    # default runs a whole epoch per call up to 4096 steps: each further call costs about
    # 3 ms on a 2-core CPU (Yale, 55 steps: 0.040 s an epoch in one call, 0.051 s in five),
    # and a smaller cap would fall to 1 on a prime number of steps above it (37 steps at
    # 32). Batch-level callbacks and the progress bar see one call per execution.
    steps_per_execution: int = 4096
    # Compile the whole training step with XLA (Keras's `jit_compile=True`). False keeps
    # Keras's "auto" (off on CPU-only machines); SparseDense's kernels use XLA either way.
    # Faster at small batches; float rounding differs, and each pruning event recompiles.
    jit_compile: bool = False

    def keras_weight_decay(self) -> float:
        """The `weight_decay` argument of a Keras optimizer giving the per-step decay."""
        return self.weight_decay / self.learning_rate


@dataclasses.dataclass
class OutputConfig:
    # Run folder: config.json, results.json, model.keras, TensorBoard logs.
    dir: str = "runs/default"
    # Write TensorBoard event files under dir/tensorboard.
    tensorboard: bool = True
    # Save the final model as dir/model.keras.
    save_model: bool = True


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


# Applied when no config file is given: synthetic data, small enough to train in about a
# minute on two CPU cores, with a short pruning schedule so every feature is exercised.
QUICK_RUN: dict[str, dict[str, Any]] = {
    "model": {"hidden": [200, 200], "start": 3, "prune_epochs": 5},
    "train": {"epochs": 15},
    "output": {"dir": "runs/default"},
}

_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "output": OutputConfig,
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_TYPES: dict[str, dict[str, Any]] = {s: _field_types(c) for s, c in _SECTION_TYPES.items()}


def valid_keys() -> list[str]:
    """All dotted keys, e.g. `["data.path", ..., "output.save_model"]`."""
    return [f"{s}.{k}" for s, fields in _TYPES.items() for k in fields]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"list[{typing.get_args(tp)[0].__name__}]"
    return tp.__name__


def _keys_hint() -> str:
    return "Valid keys: " + ", ".join(
        f"{s}.{k} ({_type_name(t)})" for s, f in _TYPES.items() for k, t in f.items()
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Returns `value` as type `tp` or raises ConfigError (ints are accepted for floats)."""
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        ok = isinstance(value, list) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        )
        value = list(value) if ok else value
    if not ok:
        raise ConfigError(f"`{key}` must be {_type_name(tp)}. Received: {key}={value!r}")
    return value


def _set(cfg: Config, key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    if section not in _TYPES or name not in _TYPES[section]:
        raise ConfigError(f"Unknown config key {key!r}. {_keys_hint()}")
    setattr(getattr(cfg, section), name, _coerce(key, value, _TYPES[section][name]))


def _apply_tables(cfg: Config, tables: dict[str, Any], source: str) -> None:
    for section, body in tables.items():
        if not isinstance(body, dict):
            raise ConfigError(
                f"{source}: top-level key {section!r} must be a table such as [model]. "
                f"{_keys_hint()}"
            )
        for name, value in body.items():
            _set(cfg, f"{section}.{name}", value)


def parse_value(text: str) -> Any:
    """Parses an override value as a TOML value; a bare word that is not TOML is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if "\n" in text or text.lstrip()[:1] in ("[", "{", '"', "'"):
            raise ConfigError(f"Cannot parse override value as TOML. Received: {text!r}") from None
        return text.strip()


def apply_override(cfg: Config, override: str) -> None:
    """Applies one `KEY=VALUE` override (dotted key, TOML value) to `cfg` in place."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"Overrides must look like KEY=VALUE. Received: {override!r}")
    _set(cfg, key, parse_value(text))


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Range and choice checks; raises ConfigError naming the key and value.

    Each value is checked with `keras_npset.validation`, the checks the library's own
    arguments use, named by its dotted key; then the rules that tie keys together.
    """
    try:
        _check_values(cfg)
    except ConfigError:
        raise
    except ValueError as e:  # from keras_npset.validation: one line, naming the key
        raise ConfigError(str(e)) from None
    _check_combinations(cfg)


def _check_values(cfg: Config) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    check_number("data.train_fraction", d.train_fraction, 0, 1, open_min=True, open_max=True)
    check_int("data.synthetic_samples", d.synthetic_samples, 2)
    check_int("data.synthetic_features", d.synthetic_features, 1)
    check_int("data.synthetic_informative", d.synthetic_informative, 1, d.synthetic_features)
    check_int("data.synthetic_classes", d.synthetic_classes, 2)
    check_choice("model.method", m.method, METHODS)
    check_widths("model.hidden", m.hidden)
    check_positive("model.epsilon", m.epsilon)
    check_fraction("model.zeta", m.zeta)
    check_fraction("model.alpha", m.alpha)
    check_int("model.start", m.start, 0)
    check_int("model.prune_epochs", m.prune_epochs, 0)
    check_choice("model.init", m.init, NEW_VALUE_INITS)
    check_choice("model.criterion", m.criterion, CRITERIA)
    check_int("model.min_units", m.min_units, 1)
    check_choice("model.kernel_impl", m.kernel_impl, KERNEL_IMPLEMENTATIONS)
    check_choice("model.kernel_initializer", m.kernel_initializer, KERNEL_INITIALIZERS)
    check_choice("model.dense_initializer", m.dense_initializer, KERNEL_INITIALIZERS)
    check_int("model.input_k", m.input_k, 0)  # 0 = no input pruning
    check_int("model.input_start", m.input_start, 0)
    check_int("model.input_prune_epochs", m.input_prune_epochs, 0)
    check_choice("model.feature_criterion", m.feature_criterion, IMPORTANCE_CRITERIA)
    check_int("train.epochs", t.epochs, 1)
    check_int("train.batch_size", t.batch_size, 1)
    check_positive("train.learning_rate", t.learning_rate)
    check_fraction("train.momentum", t.momentum)
    check_number("train.weight_decay", t.weight_decay, 0)
    check_int("train.seed", t.seed, 0)
    check_choice("train.loss", t.loss, LOSSES)
    check_choice("train.verbose", t.verbose, (0, 1, 2))
    check_int("train.steps_per_execution", t.steps_per_execution, 1)
    check_dir("output.dir", cfg.output.dir)


def _check_combinations(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    _check(
        not t.jit_compile or m.kernel_impl in XLA_KERNEL_IMPLEMENTATIONS,
        "`train.jit_compile` = true needs an XLA kernel: `model.kernel_impl` "
        f"{' or '.join(XLA_KERNEL_IMPLEMENTATIONS)}. Received: model.kernel_impl={m.kernel_impl!r}",
    )
    try:
        pruned = [m.hidden[i] for i in pruned_hidden(m.method, len(m.hidden))]
    except ValueError:
        raise ConfigError(
            f"`model.method` {m.method} prunes the second hidden layer and needs at least 2. "
            f"Received: model.hidden={m.hidden}"
        ) from None
    _check(
        all(h >= m.min_units for h in pruned),
        f"`model.min_units` must not exceed the width of a pruned hidden layer (pruning keeps "
        f"at least min_units neurons). Received: model.min_units={m.min_units}, "
        f"model.hidden={m.hidden}",
    )
    _check(
        m.input_k == 0 or m.method in SPARSE_METHODS,
        f"`model.input_k` > 0 (input pruning) needs a sparse method ({', '.join(SPARSE_METHODS)}). "
        f"Received: model.method={m.method!r}, model.input_k={m.input_k}",
    )


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Builds a validated `Config` from defaults, an optional TOML file and overrides.

    Args:
        path: TOML file with tables `[data]`, `[model]`, `[train]`, `[output]` holding
            only what differs from the defaults. If `None`, `QUICK_RUN` is applied
            instead (synthetic data, short run). Defaults to `None`.
        overrides: `KEY=VALUE` strings applied after the file, e.g.
            `"model.hidden=[300,300]"`; values are TOML, a bare word is a string.
            Defaults to `()`.

    Returns:
        The resolved `Config`.

    Raises:
        ConfigError: (a `ValueError`) for an unreadable file, an unknown key, a value
            of the wrong type or out of range; the message is one line.
    """
    cfg = Config()
    if path is None:
        _apply_tables(cfg, QUICK_RUN, "built-in defaults")
    else:
        try:
            with open(path, "rb") as f:
                tables = tomllib.load(f)
        except OSError as e:
            raise ConfigError(
                f"Cannot read config file ({e.strerror}). Received: path={str(path)!r}"
            ) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(
                f"Invalid TOML in config file ({e}). Received: path={str(path)!r}"
            ) from None
        _apply_tables(cfg, tables, str(path))
    for override in overrides:
        apply_override(cfg, override)
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts `{section: {key: value}}` (JSON/TOML friendly)."""
    return dataclasses.asdict(cfg)


def config_from_dict(tables: dict[str, dict[str, Any]]) -> Config:
    """Inverse of `config_to_dict` (type-checked and validated); missing keys keep defaults."""
    cfg = Config()
    _apply_tables(cfg, tables, "dict")
    validate(cfg)
    return cfg
