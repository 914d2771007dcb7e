"""NAdam: Adam with Nesterov momentum and PyTorch's momentum-decay schedule."""

from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, Pair, State

# (beta1, momentum_decay) -> [mu_product after 0, 1, 2, ... steps], extended as steps grow:
# torch multiplies a parameter's mu_product by each step's mu, so the t-th product is the
# same left-to-right product of Python floats for every parameter at step t.
_mu_products: dict[tuple[float, float], list[float]] = {}


def momentum_coefficient(beta1: float, momentum_decay: float, step: int) -> float:
    """torch's mu at ``step`` (counted from 1): beta1 (1 - 0.96^(step momentum_decay) / 2)."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def mu_product(beta1: float, momentum_decay: float, step: int) -> float:
    """The product of mu over steps 1 to ``step``, as torch's ``mu_product`` state holds it."""
    products = _mu_products.setdefault((beta1, momentum_decay), [1.0])
    while len(products) <= step:
        products.append(products[-1] * momentum_coefficient(beta1, momentum_decay, len(products)))
    return products[step]


class NAdam(FusedOptimizer):
    """``NAdam(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
        momentum_decay=4e-3, decoupled_weight_decay=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.NAdam``, and each may differ per
    param group. Per step t, with gradient g (negated when ``maximize``, plus
    weight_decay * param unless ``decoupled_weight_decay``, which scales the parameter by
    1 - lr weight_decay instead): mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2),
    m = m + (1 - beta1)(g - m), v = beta2 v + (1 - beta2) g^2,
    d = sqrt(v / (1 - beta2^t)) + eps,
    param += -lr (1 - mu_t) / (1 - prod mu_1..t) g / d - lr mu_(t+1) / (1 - prod mu_1..t+1) m / d.

    ``mu_product`` is computed from the step count in float64 and appears in ``state_dict``
    as torch's does; torch keeps it as a float32 tensor unless its default dtype is float64
    (so a float32-default torch run differs in the products' rounding), and it is computed
    for the group's current beta1 and momentum_decay (torch's accumulates the past ones'
    factors when they change during training). A parameter without a gradient is skipped.
    """

    hyperparameters = dict(
        lr=Number(2e-3, minimum=0.0),
        betas=Pair((0.9, 0.999), Number(0.9, minimum=0.0, below=1.0)),
        eps=Number(1e-8, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        momentum_decay=Number(4e-3, minimum=0.0),
        decoupled_weight_decay=Flag(False),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("exp_avg"), State("exp_avg_sq"))
    # gradient_scale = -lr (1 - mu_t) / (1 - mu_product_t),
    # momentum_scale = -lr mu_(t+1) / (1 - mu_product_(t+1)); param_scale as in AdamW.
    coefficients = (
        "gradient_scale",
        "momentum_scale",
        "bias_correction2",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "eps",
        "weight_decay",
        "param_scale",
    )
    flags = ("maximize",)

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        momentum_decay = group["momentum_decay"]
        t = step + 1
        mu = momentum_coefficient(beta1, momentum_decay, t)
        mu_next = momentum_coefficient(beta1, momentum_decay, t + 1)
        product = mu_product(beta1, momentum_decay, t)
        decoupled = group["decoupled_weight_decay"]
        return self.Fields(
            gradient_scale=-lr * (1.0 - mu) / (1.0 - product),
            momentum_scale=(-lr * mu_next) / (1.0 - product * mu_next),
            bias_correction2=1.0 - beta2**t,
            one_minus_beta1=1.0 - beta1,
            beta2=beta2,
            one_minus_beta2=1.0 - beta2,
            eps=group["eps"],
            weight_decay=0.0 if decoupled else weight_decay,
            param_scale=1.0 - lr * weight_decay if decoupled else 1.0,
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        exp_avg, exp_avg_sq = states
        exp_avg, exp_avg_sq = exp_avg[start:stop], exp_avg_sq[start:stop]
        gradient_scale, momentum_scale = fields.gradient_scale, fields.momentum_scale
        bias_correction2, one_minus_beta1 = fields.bias_correction2, fields.one_minus_beta1
        beta2, one_minus_beta2 = fields.beta2, fields.one_minus_beta2
        eps, weight_decay, param_scale = fields.eps, fields.weight_decay, fields.param_scale
        maximize = fields.maximize
        for i in range(grad.size):
            p = param_scale * param[i]
            g = decayed_gradient(grad[i], p, weight_decay, maximize)
            m = exp_avg[i]
            m = m + one_minus_beta1 * (g - m)  # torch's lerp(exp_avg, g, 1 - beta1)
            v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
            exp_avg[i] = m
            exp_avg_sq[i] = v
            denom = np.sqrt(v / bias_correction2) + eps
            param[i] = (p + gradient_scale * g / denom) + momentum_scale * m / denom

    derived_state_names = ("mu_product",)

    def derived_state(self, group: dict[str, Any], step: int) -> dict[str, float]:
        return {"mu_product": mu_product(group["betas"][0], group["momentum_decay"], step)}
