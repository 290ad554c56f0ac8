"""Argument checks, one definition each, for the library and the experiment app.

Every check returns the value as a plain Python object (so it serialises in
`get_config` and JSON) or raises a `ValueError` in Keras's style, naming the
argument, what was expected and what was received:

    Expected `epochs` to be an integer >= 1. Received: epochs=True

The same rules everywhere:

- a bool is never an integer or a number (`True` is not one epoch);
- NumPy integers are integers and NumPy floats are numbers;
- numbers are finite (NaN and infinity fail every range);
- a path is a non-empty `str` or `os.PathLike`.

NumPy only, no TensorFlow: `keras_npset.experiments.config` uses these too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np


def fail(name: str, expected: str, value: Any) -> NoReturn:
    """Raises the package's `ValueError` for argument `name`."""
    raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")


def is_int(value: Any) -> bool:
    """Whether `value` is a Python or NumPy integer (never a bool)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """Whether `value` is a finite Python or NumPy int or float (never a bool)."""
    if is_int(value):
        return True
    return isinstance(value, float | np.floating) and bool(np.isfinite(value))


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int, unless it is not an integer in `[minimum, maximum]`."""
    if minimum is not None and maximum is not None:
        expected = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    elif maximum is not None:
        expected = f"an integer <= {maximum}"
    else:
        expected = "an integer"
    if (
        not is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        fail(name, expected, value)
    return int(value)


def check_seed(name: str, value: Any) -> int | None:
    """`value` as an int, or None; a seed is an integer >= 0."""
    if value is not None and (not is_int(value) or value < 0):
        fail(name, "an integer >= 0 or None", value)
    return None if value is None else int(value)


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """`value` as a float, unless it is not a finite number in the given interval.

    `open_min` / `open_max` leave the bound itself out of the interval:
    `check_number("zeta", zeta, 0, 1, open_max=True)` accepts `[0, 1)`.
    """
    low = None if minimum is None else ("(" if open_min else "[") + f"{minimum:g}"
    high = None if maximum is None else f"{maximum:g}" + (")" if open_max else "]")
    if low is not None and high is not None:
        expected = f"a number in {low}, {high}"
    elif low is not None:
        expected = f"a number {'>' if open_min else '>='} {minimum:g}"
    elif high is not None:
        expected = f"a number {'<' if open_max else '<='} {maximum:g}"
    else:
        expected = "a finite number"
    ok = is_number(value)
    if ok and minimum is not None:
        ok = value > minimum if open_min else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if open_max else value <= maximum
    if not ok:
        fail(name, expected, value)
    return float(value)


def check_positive(name: str, value: Any, maximum: float | None = None) -> float:
    """`value` as a float, unless it is not a number > 0 (and <= `maximum`)."""
    return check_number(name, value, 0, maximum, open_min=True)


def check_fraction(name: str, value: Any) -> float:
    """`value` as a float, unless it is not a number in [0, 1)."""
    return check_number(name, value, 0, 1, open_max=True)


def check_bool(name: str, value: Any) -> bool:
    """`value` as a bool, unless it is not a Python or NumPy bool."""
    if not isinstance(value, bool | np.bool_):
        fail(name, "a bool", value)
    return bool(value)


def check_choice(name: str, value: Any, options: Sequence) -> Any:
    """`value`, unless it is not one of `options` (a bool never matches an int option)."""
    try:
        ok = value in options
    except (TypeError, ValueError):  # e.g. an array, whose == is element-wise
        ok = False
    if ok and isinstance(value, bool | np.bool_):
        ok = any(isinstance(option, bool | np.bool_) for option in options)
    if not ok:
        fail(name, f"one of {tuple(options)}", value)
    return value


def check_widths(name: str, value: Any) -> list[int]:
    """`value` as a list of ints, unless it is not a non-empty list of integers >= 1."""
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(is_int(v) and v >= 1 for v in value)
    ):
        fail(name, "a non-empty list of integers >= 1", value)
    return [int(v) for v in value]


def check_dir(name: str, value: Any) -> str:
    """`value` as a `str`, unless it is not a non-empty directory path (str or PathLike)."""
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        fail(name, "a directory path", value)
    return os.fspath(value)
