"""RMSprop, with PyTorch's smoothing constant, momentum, centering and weight decay."""

from typing import Any

import numpy as np

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State


class RMSprop(FusedOptimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
        centered=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.RMSprop``, and each may differ per
    param group. Per step, with gradient g (negated when ``maximize``, plus
    weight_decay * param): v = alpha v + (1 - alpha) g^2; centered, a = a + (1 - alpha)(g - a)
    and v~ = v - a^2 (else v~ = v); d = g / (sqrt(v~) + eps); with momentum,
    buf = momentum buf + d and param -= lr buf, else param -= lr d. A parameter without a
    gradient is skipped, as in PyTorch.
    """

    hyperparameters = dict(
        lr=Number(1e-2, minimum=0.0),
        alpha=Number(0.99, minimum=0.0),
        eps=Number(1e-8, minimum=0.0),
        weight_decay=Number(0.0, minimum=0.0),
        momentum=Number(0.0, minimum=0.0),
        centered=Flag(False),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (
        State("square_avg"),
        State("momentum_buffer", used=lambda group: group["momentum"] != 0.0),
        State("grad_avg", used=lambda group: group["centered"]),
    )
    coefficients = ("lr", "alpha", "one_minus_alpha", "eps", "weight_decay", "momentum")
    flags = ("centered", "maximize")

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        return self.Fields(
            lr=group["lr"],
            alpha=group["alpha"],
            one_minus_alpha=1.0 - group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        # d = g / (sqrt(v~) + eps), then param -= lr * d, or through the momentum buffer.
        square_avg, momentum_buffer, grad_avg = states
        square_avg = square_avg[start:stop]
        lr, alpha, one_minus_alpha = fields.lr, fields.alpha, fields.one_minus_alpha
        eps, weight_decay, momentum = fields.eps, fields.weight_decay, fields.momentum
        maximize = fields.maximize
        if fields.centered and momentum != 0.0:
            average, buffer = grad_avg[start:stop], momentum_buffer[start:stop]
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                s = alpha * square_avg[i] + one_minus_alpha * (g * g)
                square_avg[i] = s
                a = average[i]
                a = a + one_minus_alpha * (g - a)  # torch's lerp(grad_avg, g, 1 - alpha)
                average[i] = a
                b = momentum * buffer[i] + g / (np.sqrt(s - a * a) + eps)
                buffer[i] = b
                param[i] = p - lr * b
        elif fields.centered:
            average = grad_avg[start:stop]
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                s = alpha * square_avg[i] + one_minus_alpha * (g * g)
                square_avg[i] = s
                a = average[i]
                a = a + one_minus_alpha * (g - a)
                average[i] = a
                param[i] = p - lr * (g / (np.sqrt(s - a * a) + eps))
        elif momentum != 0.0:
            buffer = momentum_buffer[start:stop]
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                s = alpha * square_avg[i] + one_minus_alpha * (g * g)
                square_avg[i] = s
                b = momentum * buffer[i] + g / (np.sqrt(s) + eps)
                buffer[i] = b
                param[i] = p - lr * b
        else:
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                s = alpha * square_avg[i] + one_minus_alpha * (g * g)
                square_avg[i] = s
                param[i] = p - lr * (g / (np.sqrt(s) + eps))
