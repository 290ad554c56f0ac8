"""keras_npset/__init__.py: public names loaded on first use; the library never imports the app."""

import ast
import os
import pathlib
import subprocess
import sys

import keras_npset

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_npset"


def _fresh_python(code):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_import_loads_no_tensorflow_and_first_use_registers_every_class():
    out = _fresh_python(
        "import sys\n"
        "import keras_npset\n"
        "print('before', 'tensorflow' in sys.modules or 'keras' in sys.modules)\n"
        "from keras_npset import PruningSchedule\n"
        "import keras\n"
        "names = ['SparseDense', 'SETSquaredError', 'FeatureSelection']\n"
        "print('registered', all(keras.saving.get_registered_object('keras_npset>' + n)"
        " for n in names))\n"
    )
    assert "before False" in out and "registered True" in out


def test_public_names():
    assert keras_npset.__all__ == list(keras_npset._EXPORTS)
    assert set(keras_npset.__all__) <= set(dir(keras_npset))
    for name in keras_npset.__all__:
        value = getattr(keras_npset, name)
        assert value.__name__ == name and value.__module__ == keras_npset._EXPORTS[name]
    try:
        keras_npset.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("expected an AttributeError")


def test_type_checking_imports_match_the_exports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If)]
    imported = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == keras_npset._EXPORTS


def test_the_library_never_imports_the_experiment_app():
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            assert not any(m.startswith("keras_npset.experiments") for m in modules), path.name
