"""RMSprop, with PyTorch's smoothing constant, momentum, centering and weight decay."""

from firefly.kernels.optim import rmsprop_step
from firefly.optim.optimizer import FusedOptimizer, check_flag, check_float


class RMSprop(FusedOptimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.RMSprop``, and each may differ per
    param group. Per step, with gradient g (negated when ``maximize``, plus
    weight_decay * param): v = alpha v + (1 - alpha) g^2; centered, a = a + (1 - alpha)(g - a)
    and v~ = v - a^2 (else v~ = v); d = g / (sqrt(v~) + eps); with momentum,
    buf = momentum buf + d and param -= lr buf, else param -= lr d. A parameter without a
    gradient is skipped, as in PyTorch.
    """

    _state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
                maximize=maximize,
            ),
        )

    def _check_group(self, group):
        owner = self._owner
        return dict(
            lr=check_float(owner, "lr", group["lr"], minimum=0.0),
            alpha=check_float(owner, "alpha", group["alpha"], minimum=0.0),
            eps=check_float(owner, "eps", group["eps"], minimum=0.0),
            weight_decay=check_float(owner, "weight_decay", group["weight_decay"], minimum=0.0),
            momentum=check_float(owner, "momentum", group["momentum"], minimum=0.0),
            centered=check_flag(owner, "centered", group["centered"]),
            maximize=check_flag(owner, "maximize", group["maximize"]),
        )

    def _update(self, buf, runs):
        coefficients = [
            (g["lr"], g["alpha"], 1.0 - g["alpha"], g["eps"], g["weight_decay"], g["momentum"])
            for *_, g in runs
        ]
        flags = [(g["centered"], g["maximize"]) for *_, g in runs]
        empty = buf.values[:0]
        centered = [g["centered"] for *_, g in runs]
        with_momentum = [g["momentum"] != 0.0 for *_, g in runs]
        rmsprop_step(
            buf.grads,
            *self._run_arrays(buf, runs, coefficients, flags),
            buf.buffer("square_avg"),
            buf.buffer("grad_avg") if any(centered) else empty,
            buf.buffer("momentum_buffer") if any(with_momentum) else empty,
            buf.values,
        )
        for (_, members, *_), run_centered, momentum in zip(runs, centered, with_momentum):
            buf.live["square_avg"][members] = True
            if run_centered:
                buf.live["grad_avg"][members] = True
            if momentum:
                buf.live["momentum_buffer"][members] = True
