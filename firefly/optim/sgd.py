"""Stochastic gradient descent, with PyTorch's momentum, dampening, Nesterov and weight decay."""

from collections.abc import Callable
from typing import Any

from firefly.kernels.optim import decayed_gradient, update_kernel
from firefly.optim.optimizer import Flag, FusedOptimizer, Number, State


def _update_without_momentum(fields, grad, states, start, stop, param):
    """``SGD.update`` for runs without momentum: its first loop alone."""
    lr, weight_decay, maximize = fields.lr, fields.weight_decay, fields.maximize
    for i in range(grad.size):
        p = param[i]
        param[i] = p - lr * decayed_gradient(grad[i], p, weight_decay, maximize)


class SGD(FusedOptimizer):
    """``SGD(params, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False,
        *, maximize=False)``

    Every argument means what it means in ``torch.optim.SGD``, and each may differ per param
    group. Per step, with gradient g: g += weight_decay * param; with momentum,
    buf = momentum * buf + (1 - dampening) * g (buf = g on its first step) and
    g = g + momentum * buf (Nesterov) or g = buf; then param -= lr * g. ``maximize`` negates
    the gradient first.

    Unlike ``torch.optim.SGD``, which skips it silently, a trainable parameter without a
    gradient makes ``step()`` raise ValueError("Parameter has no gradient. ...") naming it.
    """

    hyperparameters = dict(
        lr=Number(0.01, minimum=0.0),
        momentum=Number(0.0, minimum=0.0),
        dampening=Number(0.0),
        weight_decay=Number(0.0, minimum=0.0),
        nesterov=Flag(False),
        maximize=Flag(False, keyword_only=True),
    )
    state_buffers = (State("momentum_buffer", used=lambda group: group["momentum"] != 0.0),)
    coefficients = ("lr", "weight_decay", "momentum", "one_minus_dampening")
    flags = ("nesterov", "maximize", "first_step")
    cost = "memory"
    _skips_missing_gradients = False
    # A step in which no run has momentum (SGD's default) runs a kernel of its own, without
    # update's two momentum loops: the kernel a plain SGD script compiles costs about 40% less
    # CPU to compile (docs/architecture.md, "The price of the JIT").
    _kernel_without_momentum = staticmethod(
        update_kernel("sgd_step_without_momentum", _update_without_momentum, "memory")
    )
    warmup_hyperparameters = ({}, {"momentum": 0.9})

    def _kernel_for(self, runs: list[tuple[Any, ...]]) -> Callable[..., None]:
        if all(run[4]["momentum"] == 0.0 for run in runs):
            return self._kernel_without_momentum
        return self._kernel

    def _check_relations(self, checked):
        if checked["nesterov"] and (checked["momentum"] <= 0.0 or checked["dampening"] != 0.0):
            raise ValueError(
                f"{self._owner}: nesterov=True requires momentum > 0 and dampening == 0, got "
                f"momentum={checked['momentum']} and dampening={checked['dampening']}"
            )

    def _split_flags(self, buf, group):
        # A run starts its momentum buffers either from the gradient or from the buffer:
        # parameters whose buffer exists and those whose buffer does not yet go to separate
        # runs.
        live = buf.live.get("momentum_buffer")
        return live if group["momentum"] != 0.0 and live is not None else None

    def fields(self, group: dict[str, Any], step: int, has_buffer: Any) -> tuple[Any, ...]:
        # PyTorch starts the buffer as a copy of the gradient, also when momentum is switched
        # on after some steps without it: ``first_step`` is "no buffer yet".
        return self.Fields(
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            one_minus_dampening=1.0 - group["dampening"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            first_step=not has_buffer,
        )

    @staticmethod
    def update(fields, grad, states, start, stop, param):
        (momentum_buffer,) = states
        lr, weight_decay, momentum = fields.lr, fields.weight_decay, fields.momentum
        one_minus_dampening = fields.one_minus_dampening
        nesterov, maximize = fields.nesterov, fields.maximize
        if momentum == 0.0:
            for i in range(grad.size):
                p = param[i]
                param[i] = p - lr * decayed_gradient(grad[i], p, weight_decay, maximize)
        elif fields.first_step:
            buffer = momentum_buffer[start:stop]
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                buffer[i] = g
                param[i] = p - lr * (g + momentum * g if nesterov else g)
        else:
            buffer = momentum_buffer[start:stop]
            for i in range(grad.size):
                p = param[i]
                g = decayed_gradient(grad[i], p, weight_decay, maximize)
                b = momentum * buffer[i] + one_minus_dampening * g
                buffer[i] = b
                param[i] = p - lr * (g + momentum * b if nesterov else b)
