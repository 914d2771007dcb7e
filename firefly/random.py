"""The random state behind parameter init, dropout, the random creation functions and shuffling.

``Generator`` is torch's: an object with ``manual_seed``/``seed``/``initial_seed`` (a NumPy
Generator inside) that ``generator=`` arguments accept. ``default_generator`` is the one used
when none is given; ``manual_seed`` reseeds it. Code that draws from the default must call
``generator()`` at draw time (never keep the NumPy Generator), so a later seed takes effect.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from firefly.devices import as_device

_draw_hook = None  # set_draw_hook's function, or None


def _seed_value(owner: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{owner}: seed must be an int, got {type(seed).__name__} {seed!r}")
    return operator.index(seed)


class Generator:
    """``Generator(device="cpu")``: a random state of its own, as ``torch.Generator``.

    ``manual_seed(seed)`` reseeds it (and returns it), ``seed()`` reseeds it from the operating
    system's entropy and returns the seed, ``initial_seed()`` returns the latest seed. The same
    seed gives the same draws within firefly; the numbers themselves differ from torch's (the
    underlying generator is NumPy's PCG64, not torch's Mersenne Twister).
    """

    def __init__(self, device: object = "cpu") -> None:
        self.device = as_device("Generator", device)
        self.seed()

    def manual_seed(self, seed: int) -> Generator:
        # torch accepts any int and reduces it modulo 2**64; NumPy's seeds are non-negative.
        self._seed = _seed_value("Generator.manual_seed", seed) % 2**64
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)  # None or a sequence only when passed in
        self.manual_seed(entropy % 2**63)
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """The state as a dict (NumPy's bit-generator state; not interchangeable with torch's)."""
        return {"seed": self._seed, "bit_generator": self._rng.bit_generator.state}

    def set_state(self, state: dict) -> Generator:
        if not isinstance(state, dict) or set(state) != {"seed", "bit_generator"}:
            raise TypeError(
                "Generator.set_state: expected a state from Generator.get_state(), got "
                f"{type(state).__name__}"
            )
        self._seed = state["seed"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["bit_generator"]
        return self

    def __repr__(self) -> str:
        return f"<firefly.Generator with initial_seed {self._seed}>"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Reseed firefly's default generator: parameter init, dropout, the random creation functions
    and shuffling become reproducible. Returns the default generator, as torch."""
    return default_generator.manual_seed(_seed_value("manual_seed", seed))


def seed() -> int:
    """Reseed the default generator from the operating system's entropy; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def checked(owner: str, source: object) -> Generator | None:
    """``source`` if it is a Generator or None; a TypeError naming ``owner`` otherwise."""
    if source is not None and not isinstance(source, Generator):
        raise TypeError(
            f"{owner}: generator must be a firefly.Generator, got "
            f"{type(source).__name__} {source!r}"
        )
    return source


def generator(source: Generator | None = None, owner: str = "generator") -> np.random.Generator:
    """The NumPy Generator to draw from now: ``source``'s (checked, errors naming ``owner``), or
    the default generator's."""
    if source is None:
        rng = default_generator._rng
        return rng if _draw_hook is None else _draw_hook(rng)
    checked(owner, source)
    return source._rng


def set_draw_hook(hook: Callable[[np.random.Generator], Any] | None) -> Callable | None:
    """Hook point: ``generator()`` returns ``hook(the default generator's NumPy Generator)``
    instead of it while ``hook`` is set (None removes it); returns the hook it replaces.
    ``firefly.compile`` records a step's random draws through it; draws from a Generator of the
    user's own are not recorded (a compiled step that makes them runs eagerly). Process-wide,
    not per thread."""
    global _draw_hook
    previous, _draw_hook = _draw_hook, hook
    return previous
