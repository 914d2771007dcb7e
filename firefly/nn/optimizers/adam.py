"""Adam and AdamW, with PyTorch's bias correction, AMSGrad and weight decay."""
import math

from firefly.kernels.optim import adam_step
from firefly.nn.optimizers.base import FusedOptimizer, check_flag, check_float


class Adam(FusedOptimizer):
    """``Adam(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adam``: ``weight_decay`` is an L2
    penalty added to the gradient; ``amsgrad`` normalizes by the running maximum of the second
    moment. Per step t, with gradient g (negated when ``maximize``):
    m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
    param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    As in PyTorch, a trainable parameter whose gradient is None at ``step()`` is skipped: its
    value, moments and step count stay as they are. ``step()`` is one fused kernel call per
    dtype (see ``FusedOptimizer``).
    """

    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        super().__init__(parameters, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          amsgrad=amsgrad, maximize=maximize))

    def _check_hyperparameters(self, values):
        owner = type(self).__name__
        betas = values["betas"]
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}") from None
        checked_betas = []
        for position, beta in enumerate((beta1, beta2)):
            beta = check_float(owner, f"betas[{position}]", beta, minimum=0.0)
            if beta >= 1.0:
                raise ValueError(f"{owner}: invalid betas[{position}] value {beta}; it must be in [0, 1)")
            checked_betas.append(beta)
        return dict(
            lr=check_float(owner, "lr", values["lr"], minimum=0.0),
            betas=tuple(checked_betas),
            eps=check_float(owner, "eps", values["eps"], minimum=0.0),
            weight_decay=check_float(owner, "weight_decay", values["weight_decay"], minimum=0.0),
            amsgrad=check_flag(owner, "amsgrad", values["amsgrad"]),
            maximize=check_flag(owner, "maximize", values["maximize"]),
        )

    def _update(self, group, runs):
        # Every coefficient is computed in Python floats, then given to the kernel in the
        # group's dtype (see firefly.kernels.optim).
        scalar = group.dtype.type
        beta1, beta2 = self.betas
        exp_avg, _ = group.buffer("exp_avg")
        exp_avg_sq, _ = group.buffer("exp_avg_sq")
        # Read and written only with amsgrad; an empty array (of every slice) otherwise.
        max_exp_avg_sq = group.buffer("max_exp_avg_sq")[0] if self.amsgrad else group.values[:0]
        if self._decoupled_weight_decay:
            l2_weight_decay, param_scale = 0.0, 1.0 - self.lr * self.weight_decay
        else:
            l2_weight_decay, param_scale = self.weight_decay, 1.0
        constants = [scalar(c) for c in (beta1, 1.0 - beta1, beta2, 1.0 - beta2, self.eps,
                                         l2_weight_decay, param_scale)]
        for elements, step in runs:
            t = step + 1
            step_size = scalar(self.lr / (1.0 - beta1 ** t))
            bias_correction2_sqrt = scalar(math.sqrt(1.0 - beta2 ** t))
            adam_step(group.grads[elements], step_size, bias_correction2_sqrt, *constants,
                      self.maximize, self.amsgrad, exp_avg[elements], exp_avg_sq[elements],
                      max_exp_avg_sq[elements], group.values[elements])


class AdamW(Adam):
    """``AdamW(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *, maximize=False)``

    Adam with decoupled weight decay, as ``torch.optim.AdamW``: each step first scales the
    parameter by (1 - lr * weight_decay), and the gradient gets no L2 term.
    """

    _decoupled_weight_decay = True

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
