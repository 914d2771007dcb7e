"""Adam and AdamW, with PyTorch's bias correction, AMSGrad and weight decay."""

import math

from firefly.kernels.optim import adam_step
from firefly.optim.optimizer import FusedOptimizer, check_flag, check_float


def check_betas(owner, betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}") from None
    checked = []
    for position, beta in enumerate((beta1, beta2)):
        beta = check_float(owner, f"betas[{position}]", beta, minimum=0.0)
        if beta >= 1.0:
            raise ValueError(
                f"{owner}: invalid betas[{position}] value {beta}; it must be in [0, 1)"
            )
        checked.append(beta)
    return tuple(checked)


class Adam(FusedOptimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adam``, and each may differ per param
    group: ``weight_decay`` is an L2 penalty added to the gradient; ``amsgrad`` normalizes by
    the running maximum of the second moment. Per step t, with gradient g (negated when
    ``maximize``): m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
    param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    As in PyTorch, a trainable parameter whose gradient is None at ``step()`` is skipped: its
    value, moments and step count stay as they are.
    """

    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
            ),
        )

    def _check_group(self, group):
        owner = self._owner
        return dict(
            lr=check_float(owner, "lr", group["lr"], minimum=0.0),
            betas=check_betas(owner, group["betas"]),
            eps=check_float(owner, "eps", group["eps"], minimum=0.0),
            weight_decay=check_float(owner, "weight_decay", group["weight_decay"], minimum=0.0),
            amsgrad=check_flag(owner, "amsgrad", group["amsgrad"]),
            maximize=check_flag(owner, "maximize", group["maximize"]),
        )

    def _update(self, buf, runs):
        # Every coefficient is computed in Python floats, then rounded once to the buffer's
        # dtype (see firefly.kernels.optim).
        coefficients, flags = [], []
        for _, _, step, _, group in runs:
            lr, weight_decay = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            t = step + 1
            if self._decoupled_weight_decay:
                l2_weight_decay, param_scale = 0.0, 1.0 - lr * weight_decay
            else:
                l2_weight_decay, param_scale = weight_decay, 1.0
            coefficients.append(
                (
                    lr / (1.0 - beta1**t),
                    1.0 / math.sqrt(1.0 - beta2**t),
                    beta1,
                    1.0 - beta1,
                    beta2,
                    1.0 - beta2,
                    group["eps"],
                    l2_weight_decay,
                    param_scale,
                )
            )
            flags.append((group["maximize"], group["amsgrad"]))
        amsgrad = any(f[1] for f in flags)
        # Read and written only by amsgrad runs; an empty array when there are none.
        max_exp_avg_sq = buf.buffer("max_exp_avg_sq") if amsgrad else buf.values[:0]
        adam_step(
            buf.grads,
            *self._run_arrays(buf, runs, coefficients, flags),
            buf.buffer("exp_avg"),
            buf.buffer("exp_avg_sq"),
            max_exp_avg_sq,
            buf.values,
        )
        for (_, members, *_), (_, run_amsgrad) in zip(runs, flags):
            buf.live["exp_avg"][members] = True
            buf.live["exp_avg_sq"][members] = True
            if run_amsgrad:
                buf.live["max_exp_avg_sq"][members] = True


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *, maximize=False)``

    Adam with decoupled weight decay, as ``torch.optim.AdamW``: each step first scales the
    parameter by (1 - lr * weight_decay), and the gradient gets no L2 term.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
