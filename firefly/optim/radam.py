"""RAdam: Adam whose adaptive step is rectified, and left out while its variance is unknown."""

import math
from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, Pair, State


class RAdam(FusedOptimizer):
    """``RAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
        decoupled_weight_decay=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.RAdam``, and each may differ per
    param group. Per step t, with gradient g (negated when ``maximize``, plus
    weight_decay * param unless ``decoupled_weight_decay``, which scales the parameter by
    1 - lr weight_decay instead): m = m + (1 - beta1)(g - m), v = beta2 v + (1 - beta2) g^2,
    rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t); when
    rho_t > 5, param -= lr m / (1 - beta1^t) * sqrt(1 - beta2^t) / (sqrt(v) + eps) * r_t with
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)), else
    param -= lr m / (1 - beta1^t). A parameter without a gradient is skipped, as in PyTorch.
    """

    hyperparameters = dict(
        lr=Number(1e-3, minimum=0.0),
        betas=Pair((0.9, 0.999), Number(0.9, minimum=0.0, below=1.0)),
        eps=Number(1e-8, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        decoupled_weight_decay=Flag(False),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("exp_avg"), State("exp_avg_sq"))
    # step_size = lr / (1 - beta1^t); adaptive_scale = sqrt(1 - beta2^t) r_t, used when
    # ``rectified`` (rho_t > 5); param_scale as in AdamW.
    coefficients = (
        "step_size",
        "adaptive_scale",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "eps",
        "weight_decay",
        "param_scale",
    )
    flags = ("maximize", "rectified")

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        t = step + 1
        bias_correction2 = 1.0 - beta2**t
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * t * (beta2**t) / bias_correction2
        rectified = rho_t > 5.0
        rectification = (
            math.sqrt(
                (rho_t - 4.0)
                * (rho_t - 2.0)
                * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
            )
            if rectified
            else 0.0
        )
        decoupled = group["decoupled_weight_decay"]
        return self.Fields(
            step_size=lr / (1.0 - beta1**t),
            adaptive_scale=math.sqrt(bias_correction2) * rectification,
            one_minus_beta1=1.0 - beta1,
            beta2=beta2,
            one_minus_beta2=1.0 - beta2,
            eps=group["eps"],
            weight_decay=0.0 if decoupled else weight_decay,
            param_scale=1.0 - lr * weight_decay if decoupled else 1.0,
            maximize=group["maximize"],
            rectified=rectified,
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        exp_avg, exp_avg_sq = states
        exp_avg, exp_avg_sq = exp_avg[start:stop], exp_avg_sq[start:stop]
        step_size, adaptive_scale = fields.step_size, fields.adaptive_scale
        one_minus_beta1 = fields.one_minus_beta1
        beta2, one_minus_beta2 = fields.beta2, fields.one_minus_beta2
        eps, weight_decay, param_scale = fields.eps, fields.weight_decay, fields.param_scale
        maximize = fields.maximize
        if fields.rectified:
            for i in range(grad.size):
                p = param_scale * param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                m = exp_avg[i]
                m = m + one_minus_beta1 * (g - m)  # torch's lerp(exp_avg, g, 1 - beta1)
                v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                param[i] = p - step_size * m * (adaptive_scale / (np.sqrt(v) + eps))
        else:
            for i in range(grad.size):
                p = param_scale * param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                m = exp_avg[i]
                m = m + one_minus_beta1 * (g - m)
                exp_avg[i] = m
                exp_avg_sq[i] = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
                param[i] = p - step_size * m
