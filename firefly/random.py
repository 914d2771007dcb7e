"""The random state behind parameter init and DataLoader shuffling.

One module-level NumPy Generator, replaced wholesale by ``manual_seed``. Code that draws from
it must call ``generator()`` at draw time (never keep a reference), so a later seed takes effect.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from firefly.validation import as_int

_generator = np.random.default_rng()
_draw_hook = None  # set_draw_hook's function, or None


def manual_seed(seed):
    """Reseed firefly's generator: parameter init and shuffling become reproducible."""
    global _generator
    _generator = np.random.default_rng(as_int("manual_seed", "seed", seed, 0))


def generator():
    """The current generator (the one the latest ``manual_seed`` made), or what the draw hook
    puts in its place."""
    if _draw_hook is not None:
        return _draw_hook(_generator)
    return _generator


def set_draw_hook(hook: Callable[[np.random.Generator], Any] | None) -> Callable | None:
    """Hook point: ``generator()`` returns ``hook(the generator)`` instead of the generator
    while ``hook`` is set (None removes it); returns the hook it replaces. ``firefly.compile``
    records a step's random draws through it. Process-wide, not per thread."""
    global _draw_hook
    previous, _draw_hook = _draw_hook, hook
    return previous
