"""The random state behind parameter init and DataLoader shuffling.

One module-level NumPy Generator, replaced wholesale by ``manual_seed``. Code that draws from
it must call ``generator()`` at draw time (never keep a reference), so a later seed takes effect.
"""
import operator

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed firefly's generator: parameter init and shuffling become reproducible."""
    if isinstance(seed, bool):
        raise TypeError("manual_seed: seed must be a non-negative int, got a bool")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"manual_seed: seed must be a non-negative int, got {type(seed).__name__} {seed!r}") from None
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed}")
    global _generator
    _generator = np.random.default_rng(seed)


def generator():
    """The current generator (the one the latest ``manual_seed`` made)."""
    return _generator
