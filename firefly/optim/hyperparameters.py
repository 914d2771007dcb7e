"""What a fused optimizer declares: its hyperparameters (name, default, bounds) and its state
buffers. ``FusedOptimizer`` generates the constructor, the param-group validation and the
state handling from these declarations, so an optimizer spells none of them out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firefly.validation import check_flag, check_float


class Number:
    """A real hyperparameter: ``default``, at least ``minimum`` and below ``below`` when given,
    always finite. Checked values are Python floats."""

    def __init__(
        self,
        default: float,
        minimum: float | None = None,
        below: float | None = None,
        keyword_only: bool = False,
    ) -> None:
        self.default, self.minimum, self.below = default, minimum, below
        self.keyword_only = keyword_only

    def check(self, owner: str, name: str, value: Any) -> float:
        value = check_float(owner, name, value, minimum=self.minimum)
        if self.below is not None and value >= self.below:
            raise ValueError(
                f"{owner}: invalid {name} value {value}; it must be in "
                f"[{self.minimum:g}, {self.below:g})"
            )
        return value


class Flag:
    """A bool hyperparameter. Checked values are Python bools."""

    def __init__(self, default: bool, keyword_only: bool = False) -> None:
        self.default, self.keyword_only = default, keyword_only

    def check(self, owner: str, name: str, value: Any) -> bool:
        return check_flag(owner, name, value)


class Pair:
    """A pair of numbers, each checked as ``element`` (Adam's ``betas``). Checked values are
    tuples of two Python floats."""

    def __init__(self, default: tuple[float, float], element: Number) -> None:
        self.default, self.element, self.keyword_only = default, element, False

    def check(self, owner: str, name: str, value: Any) -> tuple[float, float]:
        try:
            first, second = value
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: {name} must be a pair, got {value!r}") from None
        return (
            self.element.check(owner, f"{name}[0]", first),
            self.element.check(owner, f"{name}[1]", second),
        )


Hyperparameter = Number | Flag | Pair


class State:
    """A flat state buffer, named as in ``state_dict`` (torch's name).

    ``used(group)``, given a param group's checked hyperparameters, says whether that group's
    parameters use the buffer (default: always); a buffer no group uses is not allocated and
    reaches the kernel empty. ``initial`` names a hyperparameter whose value fills the buffer
    when the optimizer is built (Adagrad's ``initial_accumulator_value``); such state exists from
    construction, with step count 0, and ``state_dict`` lists it before any step. Without it the
    buffer starts as zeros on first use."""

    def __init__(
        self,
        name: str,
        used: Callable[[dict[str, Any]], bool] | None = None,
        initial: str | None = None,
    ) -> None:
        self.name, self.used, self.initial = name, used, initial
