"""Argument checks shared by the Python-level API (layers, data, seeding)."""

import operator


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
