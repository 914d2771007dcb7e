"""Adamax: Adam with the infinity norm of the gradients in place of the second moment."""

from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, Pair, State


class Adamax(FusedOptimizer):
    """``Adamax(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
        *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adamax``, and each may differ per
    param group. Per step t, with gradient g (negated when ``maximize``, plus
    weight_decay * param): m = m + (1 - beta1)(g - m), u = max(beta2 u, |g| + eps),
    param -= lr / (1 - beta1^t) * m / u. A parameter without a gradient is skipped, as in
    PyTorch.
    """

    hyperparameters = dict(
        lr=Number(2e-3, minimum=0.0),
        betas=Pair((0.9, 0.999), Number(0.9, minimum=0.0, below=1.0)),
        eps=Number(1e-8, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("exp_avg"), State("exp_inf"))
    coefficients = ("clr", "one_minus_beta1", "beta2", "eps", "weight_decay")
    flags = ("maximize",)

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        beta1, beta2 = group["betas"]
        return self.Fields(
            clr=group["lr"] / (1.0 - beta1 ** (step + 1)),
            one_minus_beta1=1.0 - beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        exp_avg, exp_inf = states
        exp_avg, exp_inf = exp_avg[start:stop], exp_inf[start:stop]
        clr, one_minus_beta1, beta2 = fields.clr, fields.one_minus_beta1, fields.beta2
        eps, weight_decay, maximize = fields.eps, fields.weight_decay, fields.maximize
        for i in range(grad.size):
            p = param[i]
            g = decayed_gradient(grad[i], p, weight_decay, maximize)
            m = exp_avg[i]
            m = m + one_minus_beta1 * (g - m)  # torch's lerp(exp_avg, g, 1 - beta1)
            exp_avg[i] = m
            u = beta2 * exp_inf[i]
            bound = np.abs(g) + eps
            if not u >= bound:  # a NaN u stays NaN, a NaN bound wins, as in torch.maximum
                u = bound if u == u else u
            exp_inf[i] = u
            param[i] = p - clr * (m / u)
