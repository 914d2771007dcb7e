"""Adadelta: steps scaled by the ratio of the running RMS of past steps to that of gradients."""

from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State


class Adadelta(FusedOptimizer):
    """``Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adadelta``, and each may differ per
    param group. Per step, with gradient g (negated when ``maximize``, plus
    weight_decay * param): v = rho v + (1 - rho) g^2, d = sqrt(a + eps) / sqrt(v + eps) * g,
    a = rho a + (1 - rho) d^2, param -= lr d. A parameter without a gradient is skipped, as
    in PyTorch.
    """

    hyperparameters = dict(
        lr=Number(1.0, minimum=0.0),
        rho=Number(0.9, minimum=0.0),
        eps=Number(1e-6, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("square_avg"), State("acc_delta"))
    coefficients = ("lr", "rho", "one_minus_rho", "eps", "weight_decay")
    flags = ("maximize",)

    def _check_relations(self, checked):
        if checked["rho"] > 1.0:  # torch allows rho == 1, so Number's open bound does not fit
            raise ValueError(
                f"{self._owner}: invalid rho value {checked['rho']}; it must be in [0, 1]"
            )

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        return self.Fields(
            lr=group["lr"],
            rho=group["rho"],
            one_minus_rho=1.0 - group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        square_avg, acc_delta = states
        square_avg, acc_delta = square_avg[start:stop], acc_delta[start:stop]
        lr, rho, one_minus_rho = fields.lr, fields.rho, fields.one_minus_rho
        eps, weight_decay, maximize = fields.eps, fields.weight_decay, fields.maximize
        for i in range(grad.size):
            p = param[i]
            g = decayed_gradient(grad[i], p, weight_decay, maximize)
            v = rho * square_avg[i] + one_minus_rho * (g * g)
            square_avg[i] = v
            delta = np.sqrt(acc_delta[i] + eps) / np.sqrt(v + eps) * g
            acc_delta[i] = rho * acc_delta[i] + one_minus_rho * (delta * delta)
            param[i] = p - lr * delta
