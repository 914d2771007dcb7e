"""Number checks for the Python-level API (layers, optimizers, schedulers, op attributes,
data, seeding), in one place: each returns the value as a plain Python number or raises a
TypeError (not a number at all) or ValueError (a number out of range) that names the owner and
the argument. Dtype rules live in ``firefly.dtypes``."""

import math
import numbers
import operator
from typing import Any

import numpy as np


def is_real(value: object) -> bool:
    """True for a Python or NumPy real number or a 0-d array of one, bools included."""
    return isinstance(value, numbers.Real) or (isinstance(value, np.ndarray) and value.ndim == 0)


def is_bool(value: object) -> bool:
    """True for a Python or NumPy bool, or a 0-d bool array."""
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, np.ndarray) and value.shape == () and value.dtype == bool
    )


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_open: bool = False,
    finite: bool = True,
) -> Any:
    """``value`` itself, checked: a TypeError unless it is a real number (bools are refused); a
    ValueError if it is NaN, infinite when ``finite``, below ``minimum`` (or equal to it when
    ``minimum_open``) or above ``maximum``. ``float()`` it where a float is wanted: an int
    stays an int here (a scheduler's ``T_max``)."""
    if not is_real(value) or is_bool(value):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if minimum is not None and (number < minimum or (minimum_open and number == minimum)):
        raise ValueError(
            f"{owner}: {name} must be {'>' if minimum_open else '>='} {minimum}, got {value!r}"
        )
    if maximum is not None and number > maximum:
        raise ValueError(f"{owner}: {name} must be <= {maximum}, got {value!r}")
    return value


def check_float(owner: str, name: str, value: Any, minimum: float | None = None) -> float:
    """``check_number`` with the optimizers' wording, which is torch's ("invalid lr value -1.0;
    lr must be a finite number >= 0.0")."""
    if not is_real(value) or is_bool(value):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(
            f"{owner}: invalid {name} value {value}; {name} must be a finite number{bound}"
        )
    return value


def check_flag(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool; a TypeError unless it is a bool (a string like "False" is refused)."""
    if is_bool(value):
        return bool(value)
    raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")


def as_int(owner: str, name: str, value: Any, minimum: int) -> int:
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
