"""Rprop: per-element step sizes grown or shrunk by the sign agreement of successive gradients."""

from typing import Any

import numpy as np

from firefly.optim.optimizer import Flag, FusedOptimizer, Number, Pair, State


class Rprop(FusedOptimizer):
    """``Rprop(params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, maximize=False)``

    Every argument means what it means in ``torch.optim.Rprop``, and each may differ per
    param group. Per step, with gradient g (negated when ``maximize``) and the previous
    step's ``prev``: where g prev > 0 the element's ``step_size`` is multiplied by etas[1],
    where g prev < 0 by etas[0] and g is taken as 0, then clamped to ``step_sizes``;
    param -= sign(g) step_size, prev = g. ``step_size`` starts at the group's lr on a
    parameter's first step, as in PyTorch, and a parameter without a gradient is skipped.
    """

    hyperparameters = dict(
        lr=Number(1e-2, minimum=0.0),
        etas=Pair((0.5, 1.2), Number(0.5)),
        step_sizes=Pair((1e-6, 50), Number(1e-6)),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("prev"), State("step_size"))
    coefficients = ("lr", "etaminus", "etaplus", "step_size_min", "step_size_max")
    flags = ("maximize", "first")  # first: the run's step sizes start at lr
    cost = "memory"

    def _check_relations(self, checked):
        etaminus, etaplus = checked["etas"]
        if not 0.0 < etaminus < 1.0 < etaplus:
            raise ValueError(
                f"{self._owner}: invalid etas {checked['etas']}; they must satisfy "
                "0 < etas[0] < 1 < etas[1]"
            )

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        return self.Fields(
            lr=group["lr"],
            etaminus=etaminus,
            etaplus=etaplus,
            step_size_min=step_size_min,
            step_size_max=step_size_max,
            maximize=group["maximize"],
            first=step == 0,
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        prev, step_size = states
        prev, step_size = prev[start:stop], step_size[start:stop]
        etaminus, etaplus = fields.etaminus, fields.etaplus
        low, high, maximize = fields.step_size_min, fields.step_size_max, fields.maximize
        if fields.first:
            step_size[:] = fields.lr
        for i in range(grad.size):
            g = -grad[i] if maximize else grad[i]
            agreement = g * prev[i]
            if agreement > 0.0:
                factor = etaplus
            elif agreement < 0.0:
                factor = etaminus
            elif agreement == 0.0:
                factor = 1.0
            else:  # NaN: torch's sign leaves it, and the step size becomes NaN
                factor = agreement
            size = step_size[i] * factor
            if size < low:
                size = low
            elif size > high:
                size = high
            step_size[i] = size
            if agreement < 0.0:  # torch takes the gradient as 0: no move, and prev = 0
                param[i] = param[i] - 0.0 * size
                prev[i] = 0.0
            else:
                param[i] = param[i] - np.sign(g) * size
                prev[i] = g
