"""ASGD: SGD with a decaying step size and a running average of the parameters."""

from typing import Any

from firefly.kernels.optim import decayed_gradient
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State


def eta_after(group: dict, step: int) -> float:
    """torch's ``eta`` state after ``step`` updates: lr / (1 + lambd lr step)^alpha."""
    lr = group["lr"]
    return lr / ((1.0 + group["lambd"] * lr * step) ** group["alpha"])


def mu_after(group: dict, step: int) -> float:
    """torch's ``mu`` state after ``step`` updates: 1 / max(1, step - t0)."""
    return 1.0 / max(1.0, step - group["t0"])


class ASGD(FusedOptimizer):
    """``ASGD(params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
        *, maximize=False)``

    Every argument means what it means in ``torch.optim.ASGD``, and each may differ per
    param group (``maximize`` is keyword-only here: torch's ``foreach`` comes before it). Per
    step t, with gradient g (negated when ``maximize``, plus weight_decay * param) and
    eta = lr / (1 + lambd lr (t - 1))^alpha, mu = 1 / max(1, t - 1 - t0):
    param = param (1 - lambd eta) - eta g, then ax = param when mu = 1, else
    ax += mu (param - ax).

    ``eta`` and ``mu`` are derived from the step count with the group's current
    hyperparameters and appear in ``state_dict`` as torch's (torch computes each step's from
    the previous step's lr, and keeps them in its default dtype: float32 unless that is
    float64). A parameter without a gradient is skipped, as in PyTorch.
    """

    hyperparameters = dict(
        lr=Number(1e-2, minimum=0.0),
        lambd=Number(1e-4),
        alpha=Number(0.75),
        t0=Number(1e6),
        weight_decay=Number(0.0, minimum=0.0),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("ax"),)
    derived_state_names = ("eta", "mu")
    # param_scale = 1 - lambd eta, the step's decay; averaging: mu != 1 (else ax = param)
    coefficients = ("eta", "param_scale", "mu", "weight_decay")
    flags = ("maximize", "averaging")
    cost = "memory"

    def derived_state(self, group: dict[str, Any], step: int) -> dict[str, float]:
        return {"eta": eta_after(group, step), "mu": mu_after(group, step)}

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        eta, mu = eta_after(group, step), mu_after(group, step)
        return self.Fields(
            eta=eta,
            param_scale=1.0 - group["lambd"] * eta,
            mu=mu,
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
            averaging=mu != 1.0,
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        (ax,) = states
        ax = ax[start:stop]
        eta, param_scale, mu = fields.eta, fields.param_scale, fields.mu
        weight_decay, maximize = fields.weight_decay, fields.maximize
        if fields.averaging:
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                p = p * param_scale - eta * g
                param[i] = p
                a = ax[i]
                ax[i] = a + (p - a) * mu
        else:
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                p = p * param_scale - eta * g
                param[i] = p
                ax[i] = p
