"""The random state behind parameter init and DataLoader shuffling.

One module-level NumPy Generator, replaced wholesale by ``manual_seed``. Code that draws from
it must call ``generator()`` at draw time (never keep a reference), so a later seed takes effect.
"""

import numpy as np

from firefly.validation import as_int

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed firefly's generator: parameter init and shuffling become reproducible."""
    global _generator
    _generator = np.random.default_rng(as_int("manual_seed", "seed", seed, 0))


def generator():
    """The current generator (the one the latest ``manual_seed`` made)."""
    return _generator
