"""Number checks for the Python-level API (layers, optimizers, schedulers, op attributes,
data, seeding), in one place: each returns the value as a plain Python number or raises a
TypeError (not a number at all) or ValueError (a number out of range) that names the owner and
the argument. Dtype rules live in ``firefly.dtypes``."""

import math
import numbers
import operator

import numpy as np


def is_real(value):
    """True for a Python or NumPy real number or a 0-d array of one, bools included."""
    return isinstance(value, numbers.Real) or (isinstance(value, np.ndarray) and value.ndim == 0)


def is_bool(value):
    """True for a Python or NumPy bool, or a 0-d bool array."""
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, np.ndarray) and value.shape == () and value.dtype == bool
    )


def check_float(owner, name, value, minimum=None):
    """``value`` as a Python float; a TypeError unless it is a number (bools are refused), a
    ValueError unless it is finite (and at least ``minimum`` when given)."""
    if not is_real(value) or is_bool(value):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(
            f"{owner}: invalid {name} value {value}; {name} must be a finite number{bound}"
        )
    return value


def check_flag(owner, name, value):
    """``value`` as a bool; a TypeError unless it is a bool (a string like "False" is refused)."""
    if is_bool(value):
        return bool(value)
    raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")


def as_int(owner, name, value, minimum):
    """``value`` as an int of at least ``minimum``; a TypeError or ValueError naming ``name``.

    Bools are refused: ``Linear(True, 3)`` is a bug, not one input feature."""
    kind = (
        "a non-negative int"
        if minimum == 0
        else "a positive int"
        if minimum == 1
        else f"an int >= {minimum}"
    )
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be {kind}, got a bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{owner}: {name} must be {kind}, got {type(value).__name__} {value!r}"
        ) from None
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be {kind}, got {value}")
    return value
