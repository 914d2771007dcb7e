"""Adagrad, with PyTorch's learning-rate decay, initial accumulator and weight decay."""

from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State


class Adagrad(FusedOptimizer):
    """``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
        eps=1e-10, *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adagrad``, and each may differ per
    param group. Per step t, with gradient g (negated when ``maximize``, plus
    weight_decay * param): sum += g^2, param -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps).
    As in PyTorch, each parameter's ``sum`` exists from construction, filled with its group's
    ``initial_accumulator_value``, and a parameter without a gradient is skipped.
    """

    hyperparameters = dict(
        lr=Number(1e-2, minimum=0.0),
        lr_decay=Number(0.0, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        initial_accumulator_value=Number(0.0, minimum=0.0),
        eps=Number(1e-10, minimum=0.0),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("sum", initial="initial_accumulator_value"),)
    coefficients = ("clr", "weight_decay", "eps")  # clr = lr / (1 + (t - 1) * lr_decay)
    flags = ("maximize",)

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        return self.Fields(
            clr=group["lr"] / (1.0 + step * group["lr_decay"]),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        (state_sum,) = states
        state_sum = state_sum[start:stop]
        clr, weight_decay, eps, maximize = (
            fields.clr,
            fields.weight_decay,
            fields.eps,
            fields.maximize,
        )
        for i in range(grad.size):
            p = param[i]
            g = decayed_gradient(grad[i], p, weight_decay, maximize)
            s = state_sum[i] + g * g
            state_sum[i] = s
            param[i] = p - clr * (g / (np.sqrt(s) + eps))
