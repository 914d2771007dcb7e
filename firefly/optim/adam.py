"""Adam and AdamW, with PyTorch's bias correction, AMSGrad and weight decay."""

import math
from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, Pair, State


class Adam(FusedOptimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
        *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adam``, and each may differ per param
    group: ``weight_decay`` is an L2 penalty added to the gradient; ``amsgrad`` normalizes by
    the running maximum of the second moment. Per step t, with gradient g (negated when
    ``maximize``): m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
    param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    As in PyTorch, a trainable parameter whose gradient is None at ``step()`` is skipped: its
    value, moments and step count stay as they are.
    """

    hyperparameters = dict(
        lr=Number(1e-3, minimum=0.0),
        betas=Pair((0.9, 0.999), Number(0.9, minimum=0.0, below=1.0)),
        eps=Number(1e-8, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        amsgrad=Flag(False),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (
        State("exp_avg"),
        State("exp_avg_sq"),
        State("max_exp_avg_sq", used=lambda group: group["amsgrad"]),
    )
    # step_size = lr / (1 - beta1**t); torch divides by sqrt(1 - beta2**t): a multiplication
    # by its inverse instead of a second division per element made the float32 step 25%
    # faster, for a rounding difference of an ulp. weight_decay is Adam's L2 term added to the
    # gradient (0 for AdamW), param_scale AdamW's decoupled decay 1 - lr * weight_decay (1 for
    # Adam).
    coefficients = (
        "step_size",
        "inverse_bias_correction2_sqrt",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "eps",
        "weight_decay",
        "param_scale",
    )
    flags = ("maximize", "amsgrad")
    _decoupled_weight_decay = False

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        t = step + 1
        decoupled = self._decoupled_weight_decay
        return self.Fields(
            step_size=lr / (1.0 - beta1**t),
            inverse_bias_correction2_sqrt=1.0 / math.sqrt(1.0 - beta2**t),
            beta1=beta1,
            one_minus_beta1=1.0 - beta1,
            beta2=beta2,
            one_minus_beta2=1.0 - beta2,
            eps=group["eps"],
            weight_decay=0.0 if decoupled else weight_decay,
            param_scale=1.0 - lr * weight_decay if decoupled else 1.0,
            maximize=group["maximize"],
            amsgrad=group["amsgrad"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        exp_avg, exp_avg_sq, max_exp_avg_sq = states
        exp_avg, exp_avg_sq = exp_avg[start:stop], exp_avg_sq[start:stop]
        step_size, correction = fields.step_size, fields.inverse_bias_correction2_sqrt
        beta1, one_minus_beta1 = fields.beta1, fields.one_minus_beta1
        beta2, one_minus_beta2 = fields.beta2, fields.one_minus_beta2
        eps, weight_decay, param_scale = fields.eps, fields.weight_decay, fields.param_scale
        maximize = fields.maximize
        if fields.amsgrad:
            largest_v = max_exp_avg_sq[start:stop]
            for i in range(grad.size):
                p = param_scale * param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                m = beta1 * exp_avg[i] + one_minus_beta1 * g
                v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                largest = largest_v[i]
                if v < largest:  # a NaN v stays NaN, as in torch.maximum
                    v = largest
                largest_v[i] = v
                param[i] = p - step_size * (m / (np.sqrt(v) * correction + eps))
        else:
            for i in range(grad.size):
                p = param_scale * param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                m = beta1 * exp_avg[i] + one_minus_beta1 * g
                v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                param[i] = p - step_size * (m / (np.sqrt(v) * correction + eps))


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
        *, maximize=False)``

    Adam with decoupled weight decay, as ``torch.optim.AdamW``: each step first scales the
    parameter by (1 - lr * weight_decay), and the gradient gets no L2 term.
    """

    hyperparameters = dict(Adam.hyperparameters, weight_decay=Number(1e-2, minimum=0.0))
    _decoupled_weight_decay = True
