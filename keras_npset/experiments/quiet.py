"""The app's processes start without TensorFlow's chatter and end without its shutdown cost.

On a machine without a GPU, importing TensorFlow prints lines such as
"Could not find cuda drivers on your machine" and "failed call to cuInit" from
C++ (file descriptor 2, before its logging is set up, whatever
`TF_CPP_MIN_LOG_LEVEL` says). `train.py`, the sweep runner and its workers
import TensorFlow through `import_tensorflow_quietly()`, so that a run's stderr
holds what the run says and nothing else. The library itself (`keras_npset`)
leaves TensorFlow's import alone: a user who imports TensorFlow gets what
TensorFlow prints.

Keras imports scikit-learn, when it is installed, for its `keras.wrappers`
(about 0.8 s of a 4-5 s import on a 2-core CPU). The app's own processes never
use those wrappers: `train.py` and the sweep workers pass `without_sklearn=True`,
so that Keras finds scikit-learn missing while it loads. scikit-learn itself stays
importable afterwards.

A process that has imported TensorFlow then spends one to several seconds in
Python's interpreter shutdown, finalising TensorFlow's modules: as long as ten
epochs of a small network. `train.py` and the sweep's worker processes end with
`exit_now(code)` once every file of their run is written and closed.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_silenced():
    """Hides what C++ code writes to file descriptor 2 while active (not sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Hidden(importlib.abc.MetaPathFinder):
    """A finder that makes the top-level packages `names` fail to import."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@contextlib.contextmanager
def modules_hidden(*names: str):
    """While active, importing the packages `names` fails as if they were not installed.

    Packages already imported stay imported and visible.
    """
    names = tuple(n for n in names if n not in sys.modules)
    finder = _Hidden(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_tensorflow_quietly(without_sklearn: bool = False) -> None:
    """Imports TensorFlow and Keras without their start-up chatter on stderr.

    Listing the devices initialises them here too, so the "failed call to cuInit"
    line that TensorFlow prints at its first device query is swallowed with the
    rest. Thread-pool settings (`tf.config.threading`) can still be changed
    afterwards. Does nothing once TensorFlow is imported.

    Args:
        without_sklearn: Keras loads without scikit-learn, as if it were not
            installed, which saves most of a second: for a process that does not
            use `keras.wrappers` (scikit-learn stays importable for other code).
            Defaults to `False`.
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    hidden = ("sklearn",) if without_sklearn else ()
    with native_stderr_silenced(), modules_hidden(*hidden):
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()


def exit_now(code: int) -> None:
    """Ends the process with `code`, skipping the interpreter's shutdown.

    Flushes Python's standard streams first. Only for the end of a process whose
    files are all written and closed (the app's run files are written atomically
    and synced, its TensorBoard writers closed when training ends): `atexit`
    handlers and finalizers do not run. Under a profiler or tracer
    (`python -m cProfile`, coverage), which write their results at exit, it
    raises `SystemExit(code)` instead.
    """
    if sys.getprofile() is not None or sys.gettrace() is not None:
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
