"""Tests for keras_npset.experiments.config: defaults, TOML, overrides, every rejected input."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_npset.experiments import config as C

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- defaults


def test_dataclass_defaults_are_the_papers_setting():
    cfg = C.Config()
    assert cfg.model.epsilon == 10 and cfg.model.zeta == 0.3 and cfg.model.alpha == 0.04
    assert (cfg.model.start, cfg.model.prune_epochs) == (10, 40)
    assert cfg.model.hidden == [1000, 1000]
    assert cfg.train.learning_rate == 0.01 and cfg.train.momentum == 0.9
    assert cfg.train.batch_size == 2 and cfg.train.epochs == 100
    # The paper trains "without any explicit regularization": no weight decay.
    assert cfg.train.weight_decay == 0.0 and cfg.train.loss == "set_squared_error"
    assert cfg.data.path == ""
    # The paper's code: N(0, 1) / 10 weights; fewest *outgoing* connections pruned (Table 3).
    assert cfg.model.kernel_initializer == "set_normal" and cfg.model.criterion == "out"
    assert cfg.model.dense_initializer == "glorot_uniform"  # N(0,1)/10 stalls dense layers


def test_dataclass_list_default_is_not_shared():
    a, b = C.Config(), C.Config()
    a.model.hidden.append(3)
    assert b.model.hidden == [1000, 1000]


def test_keras_weight_decay_is_not_scaled_by_lr():
    t = C.TrainConfig(learning_rate=0.01, weight_decay=0.0002)
    # Keras subtracts lr * wd * W per step; lr * (0.0002 / lr) = 0.0002, the original's decay.
    assert t.keras_weight_decay() == pytest.approx(0.02)
    assert t.learning_rate * t.keras_weight_decay() == pytest.approx(0.0002)


def test_no_file_gives_the_quick_synthetic_run():
    cfg = C.load_config()
    assert cfg.data.path == ""
    assert cfg.model.hidden == [200, 200]
    assert cfg.train.epochs == 15 and (cfg.model.start, cfg.model.prune_epochs) == (3, 5)
    # Everything else is the paper's.
    assert cfg.train.batch_size == 2 and cfg.model.epsilon == 10.0


def test_valid_keys_cover_the_required_ones():
    keys = set(C.valid_keys())
    for key in [
        "data.path",
        "model.method",
        "model.hidden",
        "model.epsilon",
        "model.zeta",
        "model.alpha",
        "model.start",
        "model.prune_epochs",
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.momentum",
        "train.weight_decay",
        "train.seed",
        "output.dir",
    ]:
        assert key in keys


# ---------------------------------------------------------------- files and overrides


def test_file_holds_only_differences(tmp_path):
    path = _write(tmp_path, '[data]\npath = "data/x.mat"\n[model]\nhidden = [30, 30]\n')
    cfg = C.load_config(path)
    assert cfg.data.path == "data/x.mat" and cfg.model.hidden == [30, 30]
    # A file starts from the paper's defaults, not QUICK_RUN.
    assert cfg.train.epochs == 100 and cfg.model.start == 10


def test_empty_file_is_the_dataclass_defaults(tmp_path):
    assert C.load_config(_write(tmp_path, "")) == C.Config()


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("model.hidden=[300,300]", ("model", "hidden"), [300, 300]),
        ("train.epochs=5", ("train", "epochs"), 5),
        ('data.path="x.mat"', ("data", "path"), "x.mat"),
        ("data.path=x.mat", ("data", "path"), "x.mat"),
        ("data.path=/abs/dir/y.mat", ("data", "path"), "/abs/dir/y.mat"),
        ("data.path=", ("data", "path"), ""),
        ("model.method=set", ("model", "method"), "set"),
        ("data.stratify=true", ("data", "stratify"), True),
        ("model.epsilon=20", ("model", "epsilon"), 20.0),
        ("train.learning_rate=1e-3", ("train", "learning_rate"), 0.001),
        (" train.seed = 7 ", ("train", "seed"), 7),
        ("output.dir=runs/a b", ("output", "dir"), "runs/a b"),
    ],
)
def test_overrides(override, key, expected):
    cfg = C.load_config(None, [override])
    value = getattr(getattr(cfg, key[0]), key[1])
    assert value == expected and type(value) is type(expected)


def test_int_accepted_for_float_is_stored_as_float():
    cfg = C.load_config(None, ["model.zeta=0", "train.momentum=0"])
    assert isinstance(cfg.model.zeta, float) and isinstance(cfg.train.momentum, float)


def test_overrides_apply_after_file_in_order(tmp_path):
    path = _write(tmp_path, "[train]\nepochs = 3\n")
    cfg = C.load_config(path, ["train.epochs=4", "train.epochs=6"])
    assert cfg.train.epochs == 6


def test_config_to_dict_roundtrip_and_json():
    cfg = C.load_config(None, ["model.hidden=[7, 8, 9]", "model.method=dense"])
    d = C.config_to_dict(cfg)
    assert d["model"]["hidden"] == [7, 8, 9] and set(d) == {"data", "model", "train", "output"}
    again = C.config_from_dict(json.loads(json.dumps(d)))
    assert again == cfg


def test_parse_value():
    assert C.parse_value("[1, 2]") == [1, 2]
    assert C.parse_value("hello") == "hello"
    assert C.parse_value("false") is False


# ---------------------------------------------------------------- rejected inputs


def test_unknown_key_lists_valid_keys():
    with pytest.raises(C.ConfigError) as e:
        C.load_config(None, ["model.widths=[3]"])
    msg = str(e.value)
    assert "\n" not in msg
    assert "'model.widths'" in msg and "Valid keys:" in msg
    for key in C.valid_keys():
        assert key in msg


@pytest.mark.parametrize("key", ["widths=3", "foo.bar=1", "model=3", "model.hidden.x=1"])
def test_unknown_keys(key):
    with pytest.raises(C.ConfigError, match="Unknown config key"):
        C.load_config(None, [key])


@pytest.mark.parametrize(
    "override, expected_type",
    [
        ("train.epochs=five", "int"),
        ("train.epochs=2.5", "int"),
        ("train.epochs=true", "int"),
        ("train.epochs=[1]", "int"),
        ("train.learning_rate=fast", "float"),
        ("train.learning_rate=true", "float"),
        ("data.stratify=1", "bool"),
        ("data.stratify=yes", "bool"),
        ("data.path=3", "str"),
        ("data.path=[1]", "str"),
        ("model.hidden=300", r"list\[int\]"),
        ("model.hidden=[300.0, 300]", r"list\[int\]"),
        ("model.hidden=[true]", r"list\[int\]"),
        ('model.hidden=["a"]', r"list\[int\]"),
        ("model.method=3", "str"),
    ],
)
def test_wrong_types(override, expected_type):
    key = override.split("=")[0]
    with pytest.raises(C.ConfigError, match=rf"`{key}` must be {expected_type}\. Received: {key}="):
        C.load_config(None, [override])


@pytest.mark.parametrize(
    "override",
    [
        "model.epsilon=0",
        "model.epsilon=-1",
        "model.epsilon=nan",
        "model.zeta=1",
        "model.zeta=-0.1",
        "model.zeta=nan",
        "model.alpha=1.0",
        "model.alpha=-0.01",
        "model.start=-1",
        "model.prune_epochs=-1",
        "model.min_units=0",
        "train.epochs=0",
        "train.batch_size=0",
        "train.learning_rate=0",
        "train.momentum=1",
        "train.weight_decay=-1e-4",
        "train.seed=-3",
        "train.verbose=3",
        "train.steps_per_execution=0",
        "model.hidden=[]",
        "model.hidden=[300, 0]",
        "model.hidden=[-5]",
        "data.train_fraction=1",
        "data.train_fraction=0",
        "data.synthetic_samples=1",
        "data.synthetic_features=0",
        "data.synthetic_informative=0",
        "data.synthetic_informative=101",
        "data.synthetic_classes=1",
        'output.dir=""',
    ],
)
def test_out_of_range(override):
    key = override.split("=")[0]
    with pytest.raises(C.ConfigError, match=rf"Expected `{key}` to be .*Received: {key}=") as e:
        C.load_config(None, [override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "key, options",
    [
        ("model.method", C.METHODS),
        ("model.init", C.NEW_VALUE_INITS),
        ("model.criterion", C.CRITERIA),
        ("train.loss", C.LOSSES),
        ("model.kernel_impl", C.KERNEL_IMPLEMENTATIONS),
        ("model.kernel_initializer", C.KERNEL_INITIALIZERS),
        ("model.dense_initializer", C.KERNEL_INITIALIZERS),
        ("model.feature_criterion", C.IMPORTANCE_CRITERIA),
    ],
)
def test_choices_list_the_options(key, options):
    with pytest.raises(C.ConfigError) as e:
        C.load_config(None, [f"{key}=bogus"])
    msg = str(e.value)
    assert msg.endswith(f"Received: {key}='bogus'")
    for option in options:
        assert option in msg


@pytest.mark.parametrize("override", ["no_equals", "=3", "model.hidden=[1,", 'data.path="x'])
def test_malformed_overrides(override):
    with pytest.raises(C.ConfigError) as e:
        C.load_config(None, [override])
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(C.ConfigError, match=r"Cannot read config file.*Received: path="):
        C.load_config(str(tmp_path / "none.toml"))


def test_invalid_toml_file(tmp_path):
    with pytest.raises(C.ConfigError, match=r"Invalid TOML.*Received: path="):
        C.load_config(_write(tmp_path, "[model\nhidden = 3"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("epochs = 3\n", "must be a table"),
        ("[modle]\nhidden = [3]\n", "Unknown config key 'modle.hidden'"),
        ("[model]\nhiden = [3]\n", "Unknown config key 'model.hiden'"),
        ("[model]\nhidden = 3\n", r"`model.hidden` must be list\[int\]"),
        ("[model.sub]\nx = 1\n", "Unknown config key 'model.sub'"),
        ("[train]\nepochs = 1979-05-27\n", "`train.epochs` must be int"),
    ],
)
def test_bad_files(tmp_path, text, match):
    with pytest.raises(C.ConfigError, match=match):
        C.load_config(_write(tmp_path, text))


def test_config_error_is_a_value_error():
    assert issubclass(C.ConfigError, ValueError)


@pytest.mark.parametrize("impl", ["csr", "sparse_dense_matmul"])
def test_jit_compile_needs_an_xla_kernel(impl):
    with pytest.raises(C.ConfigError, match="train.jit_compile.*Received: model.kernel_impl="):
        C.load_config(None, ["train.jit_compile=true", f"model.kernel_impl={impl}"])
    for ok in ("auto", "gather"):
        cfg = C.load_config(None, ["train.jit_compile=true", f"model.kernel_impl={ok}"])
        assert cfg.train.jit_compile is True


# ---------------------------------------------------------------- no TensorFlow

_NO_TENSORFLOW = (
    "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
    "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
)


def _fresh_python(code):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_importing_the_config_imports_no_tensorflow():
    proc = _fresh_python("import sys\nimport keras_npset.experiments.config\n" + _NO_TENSORFLOW)
    assert proc.returncode == 0, proc.stderr


def test_rejecting_a_bad_override_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from keras_npset.experiments.config import ConfigError, load_config\n"
        "for overrides in (['bad.key=1'], ['model.zeta=2'], ['model.kernel_impl=cuda']):\n"
        "    try:\n"
        f"        load_config({str(ROOT / 'configs' / 'leukemia.toml')!r}, overrides)\n"
        "    except ConfigError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError(overrides)\n"
        "load_config(None, ['train.epochs=3'])  # and a valid one\n" + _NO_TENSORFLOW
    )
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr
