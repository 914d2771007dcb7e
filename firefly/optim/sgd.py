"""Stochastic gradient descent, with PyTorch's momentum, dampening, Nesterov and weight decay."""

from firefly.kernels.optim import sgd_step
from firefly.optim.optimizer import FusedOptimizer, check_flag, check_float


class SGD(FusedOptimizer):
    """``SGD(params, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.SGD``, and each may differ per param
    group. Per step, with gradient g: g += weight_decay * param; with momentum,
    buf = momentum * buf + (1 - dampening) * g (buf = g on its first step) and
    g = g + momentum * buf (Nesterov) or g = buf; then param -= lr * g. ``maximize`` negates
    the gradient first.

    Unlike ``torch.optim.SGD``, which skips it silently, a trainable parameter without a
    gradient makes ``step()`` raise ValueError("Parameter has no gradient. ...") naming it.
    """

    _state_names = ("momentum_buffer",)
    _skips_missing_gradients = False

    def __init__(
        self,
        params,
        lr=0.01,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def _check_group(self, group):
        owner = self._owner
        checked = dict(
            lr=check_float(owner, "lr", group["lr"], minimum=0.0),
            momentum=check_float(owner, "momentum", group["momentum"], minimum=0.0),
            dampening=check_float(owner, "dampening", group["dampening"]),
            weight_decay=check_float(owner, "weight_decay", group["weight_decay"], minimum=0.0),
            nesterov=check_flag(owner, "nesterov", group["nesterov"]),
            maximize=check_flag(owner, "maximize", group["maximize"]),
        )
        if checked["nesterov"] and (checked["momentum"] <= 0.0 or checked["dampening"] != 0.0):
            raise ValueError(
                f"{owner}: nesterov=True requires momentum > 0 and dampening == 0, got "
                f"momentum={checked['momentum']} and dampening={checked['dampening']}"
            )
        return checked

    def _split_flags(self, buf, group):
        # A run starts its momentum buffers either from the gradient or from the buffer:
        # parameters whose buffer exists and those whose buffer does not yet go to separate
        # runs.
        return (
            buf.live["momentum_buffer"]
            if group["momentum"] != 0.0 and "momentum_buffer" in buf.live
            else None
        )

    def _update(self, buf, runs):
        with_momentum = [group["momentum"] != 0.0 for *_, group in runs]
        momentum_buffer = buf.buffer("momentum_buffer") if any(with_momentum) else buf.values[:0]
        # PyTorch starts the buffer as a copy of the gradient, also when momentum is switched
        # on after some steps without it: ``first_step`` is "no buffer yet".
        arrays = self._run_arrays(
            buf,
            runs,
            [(g["lr"], g["weight_decay"], g["momentum"], 1.0 - g["dampening"]) for *_, g in runs],
            [(g["nesterov"], g["maximize"], not has_buffer) for _, _, _, has_buffer, g in runs],
        )
        sgd_step(buf.grads, *arrays, momentum_buffer, buf.values)
        for (_, members, *_), momentum in zip(runs, with_momentum):
            if momentum:
                buf.live["momentum_buffer"][members] = True
