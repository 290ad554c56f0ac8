"""keras_npset.experiments.quiet: no TensorFlow start-up chatter, no shutdown cost."""

import os
import subprocess
import sys

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


def test_tensorflow_imports_without_chatter_and_threads_stay_configurable():
    proc = _python(
        "from keras_npset.experiments.quiet import import_tensorflow_quietly\n"
        "import_tensorflow_quietly()\n"
        "import tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "print(int(tf.constant(2) + 1), tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "1"]
    assert proc.stderr == ""


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
