"""keras_npset.experiments.quiet: no TensorFlow start-up chatter, no shutdown cost."""

import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str) -> subprocess.CompletedProcess:
    # As a user's process starts: TF_CPP_MIN_LOG_LEVEL unset.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _silent_output(code: str) -> list[str]:
    """The words `code` prints, once it has exited 0 and written nothing to stderr."""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.split()


def test_tensorflow_imports_without_chatter_and_threads_stay_configurable():
    assert _silent_output(
        "from keras_npset.experiments.quiet import import_tensorflow_quietly\n"
        "import_tensorflow_quietly()\n"
        "import tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "print(int(tf.constant(2) + 1), tf.config.threading.get_intra_op_parallelism_threads())\n"
    ) == ["3", "1"]


def test_exit_now_flushes_the_streams_and_skips_shutdown():
    proc = _python(
        "import atexit, sys\n"
        "from keras_npset.experiments.quiet import exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print('written', end='')\n"
        "sys.stderr.write('to stderr')\n"
        "exit_now(3)\n"
    )
    assert proc.returncode == 3
    assert proc.stdout == "written"  # flushed; the atexit handler did not run
    assert proc.stderr == "to stderr"


def test_exit_now_lets_a_profiler_write_its_results(tmp_path):
    profile = tmp_path / "exit.prof"
    script = tmp_path / "script.py"
    script.write_text("from keras_npset.experiments.quiet import exit_now\nexit_now(0)\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert profile.stat().st_size > 0


def test_modules_hidden_fails_their_import_only_while_active(tmp_path, monkeypatch):
    from keras_npset.experiments.quiet import modules_hidden

    (tmp_path / "hidden_pkg_for_test").mkdir()
    (tmp_path / "hidden_pkg_for_test" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "hidden_pkg_for_test" / "sub.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with modules_hidden("hidden_pkg_for_test"):
        with pytest.raises(ModuleNotFoundError, match="hidden_pkg_for_test"):
            import hidden_pkg_for_test  # noqa: F401
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("hidden_pkg_for_test.sub")
        assert importlib.import_module("json").dumps(1) == "1"  # others import as usual
    assert importlib.import_module("hidden_pkg_for_test.sub").Y == 2
    with modules_hidden("hidden_pkg_for_test"):  # once imported, it stays visible
        assert importlib.import_module("hidden_pkg_for_test").X == 1
    assert not any(type(f).__name__ == "_Hidden" for f in sys.meta_path)
    sys.modules.pop("hidden_pkg_for_test.sub")
    sys.modules.pop("hidden_pkg_for_test")


def test_keras_can_load_without_sklearn_which_stays_importable():
    assert _silent_output(
        "import importlib.util, sys\n"
        "from keras_npset.experiments.quiet import import_tensorflow_quietly\n"
        "import_tensorflow_quietly(without_sklearn=True)\n"
        "print('keras' in sys.modules, 'sklearn' in sys.modules)\n"
        "if importlib.util.find_spec('sklearn') is not None:\n"
        "    import sklearn.base\n"
        "    assert sklearn.base.BaseEstimator\n"
    ) == ["True", "False"]
