"""firefly's dtype rules, in one place: which dtypes a tensor may hold, which ones ops compute
in, the default float, and how inputs of two float dtypes combine (the autograd engine's fast
path and its general path both use ``promote``). Number checks live in ``firefly.validation``."""

import numpy as np
from numpy.typing import DTypeLike

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what ops compute in
DEFAULT_FLOAT = FLOAT_DTYPES[0]  # what Python numbers, integer data and shapes alone make


def promote(dtype: np.dtype | None, other: np.dtype) -> np.dtype:
    """The dtype two float inputs compute in: their dtype if equal, else float64, as NumPy.

    ``dtype`` None (no input seen yet) gives ``other``. Python scalars take part in no promotion.
    """
    return other if dtype is None or other is dtype else FLOAT_DTYPES[1]


def is_float_dtype(dtype: object) -> bool:
    """True for the dtypes ops compute in: float32 and float64 (None is not a dtype here,
    although NumPy reads it as float64)."""
    return dtype is not None and dtype in FLOAT_DTYPES


def float_or_default(dtype: np.dtype | None) -> np.dtype:
    """``dtype`` when ops compute in it, else the default float (float32): what integer and bool
    data become, and the dtype of a constant made to match an input."""
    return dtype if dtype is not None and dtype in FLOAT_DTYPES else DEFAULT_FLOAT


def is_storable(dtype: np.dtype) -> bool:
    """True for a dtype a tensor may hold: float32/64, an integer type or bool (no float16, no
    complex, nothing wider than 8 bytes)."""
    return dtype.kind in "fiub" and dtype.itemsize <= 8 and dtype != np.float16


def tensor_dtype(owner: str, dtype: DTypeLike) -> np.dtype:
    """``dtype`` as a NumPy dtype a tensor may hold; a TypeError naming ``owner`` otherwise."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{owner}: {dtype!r} is not a dtype; use e.g. firefly.float32 or firefly.int64"
        ) from None
    if not is_storable(dtype):
        raise TypeError(
            f"{owner}: unsupported dtype {dtype}; use float32, float64, an integer type or bool"
        )
    return dtype


def float_dtype(owner: str, dtype: DTypeLike) -> np.dtype:
    """``dtype`` as float32 or float64; a TypeError naming ``owner`` otherwise."""
    try:
        checked = None if dtype is None else np.dtype(dtype)
    except TypeError:
        checked = None
    if checked is None or checked not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype}")
    return checked
