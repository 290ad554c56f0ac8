"""Argument checks shared by the public API, in Keras's error style."""

from __future__ import annotations

import numpy as np


def check_int(name: str, value, minimum: int) -> int:
    """`value` as an int, or a `ValueError` unless it is an integer >= `minimum`."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise ValueError(
            f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def check_fraction(name: str, value) -> float:
    """`value` as a float, or a `ValueError` unless it is a number in [0, 1)."""
    ok = (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and 0 <= value < 1
    )
    if not ok:
        raise ValueError(f"Expected `{name}` to be a number in [0, 1). Received: {name}={value!r}")
    return float(value)
