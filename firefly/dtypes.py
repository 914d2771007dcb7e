"""firefly's dtype rules for op inputs, in one place: what ops compute in, and how inputs of
two float dtypes combine (the autograd engine's fast path and its general path both use them)."""

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what ops compute in


def promote(dtype, other):
    """The dtype two float inputs compute in: their dtype if equal, else float64, as NumPy.

    ``dtype`` None (no input seen yet) gives ``other``. Python scalars take part in no promotion.
    """
    return other if dtype is None or other is dtype else FLOAT_DTYPES[1]


def is_float_dtype(dtype):
    """True for the dtypes ops compute in: float32 and float64."""
    return dtype in FLOAT_DTYPES
